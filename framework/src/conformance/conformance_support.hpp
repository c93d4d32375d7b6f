#pragma once
// What the conformance checks share: host-owned tensors of the component's declared shapes,
// random values from a seeded generator, contexts, and comparisons.

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "../model/declaration_checks.hpp"
#include "../model/heap_workspace.hpp"
#include "../plugins/kernel_registry.hpp"
#include "mambakit/conformance.hpp"
#include "mambakit/error.hpp"
#include "mambakit/sdk/context.hpp"
#include "mambakit/sdk/random.hpp"
#include "mambakit/sdk/tensor_spec.hpp"

namespace mambakit::conformance {

template <class T>
constexpr sdk::DType dtype_of = std::is_same_v<T, double> ? sdk::DType::kF64 : sdk::DType::kF32;

/// Throws naming `what` when a call failed.
inline void require_ok(const sdk::Status& status, const std::string& what) {
  if (!status.ok()) throw Error(fmt::format("{}: {}", what, status.message));
}

/// Tensors the host owns for a component call: one buffer per declared shape.
template <class T>
struct Tensors {
  std::vector<std::vector<T>> data;
  std::vector<std::vector<std::int64_t>> shapes;

  void add(const std::vector<std::int64_t>& shape, T value = T(0)) {
    std::int64_t count = 1;
    for (auto extent : shape) count *= extent;
    data.emplace_back(static_cast<std::size_t>(count), value);
    shapes.push_back(shape);
  }
  void add(const sdk::TensorSpec& spec) { add(std::vector<std::int64_t>(spec.shape, spec.shape + spec.rank)); }

  [[nodiscard]] std::vector<sdk::TensorView> views() const {
    std::vector<sdk::TensorView> list;
    for (std::size_t i = 0; i < data.size(); ++i) list.push_back(view(i));
    return list;
  }
  [[nodiscard]] sdk::TensorView view(std::size_t i) const {
    return sdk::make_view(const_cast<T*>(data[i].data()), dtype_of<T>, sdk::Device{}, shapes[i].data(),
                          static_cast<std::int32_t>(shapes[i].size()));
  }
  void fill_normal(sdk::Generator& generator, double stddev) {
    for (auto& buffer : data) {
      for (auto& value : buffer) value = static_cast<T>(generator.normal(0.0, stddev));
    }
  }
  void zero() {
    for (auto& buffer : data) std::fill(buffer.begin(), buffer.end(), T(0));
  }
  [[nodiscard]] bool empty() const { return data.empty(); }
};

/// Random values for a (count) buffer.
template <class T>
std::vector<T> normal_values(sdk::Generator& generator, std::int64_t count, double stddev) {
  std::vector<T> values(static_cast<std::size_t>(count));
  for (auto& value : values) value = static_cast<T>(generator.normal(0.0, stddev));
  return values;
}

/// max |a - b| / max(1, |b|) over two equally long arrays.
template <class A, class B>
double max_relative_error(const std::vector<A>& a, const std::vector<B>& b) {
  double worst = 0.0;
  for (std::size_t i = 0; i < a.size() && i < b.size(); ++i) {
    const double scale = std::max(1.0, std::abs(static_cast<double>(b[i])));
    worst = std::max(worst, std::abs(static_cast<double>(a[i]) - static_cast<double>(b[i])) / scale);
  }
  return a.size() == b.size() ? worst : INFINITY;
}

/// A check from a measured error and its tolerance.
inline ConformanceCheck measured(const std::string& name, double error, double tolerance, const std::string& what) {
  ConformanceCheck check{name, error <= tolerance, false, ""};
  check.detail = fmt::format("{}: max relative error {:.3g} (tolerance {:.1g})", what, error, tolerance);
  return check;
}

inline ConformanceCheck skipped(const std::string& name, const std::string& why) { return {name, true, true, why}; }

template <class T>
double dot(const std::vector<T>& a, const std::vector<T>& b) {
  double sum = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) sum += static_cast<double>(a[i]) * static_cast<double>(b[i]);
  return sum;
}

template <class T>
double dot(const Tensors<T>& a, const Tensors<T>& b) {
  double sum = 0.0;
  for (std::size_t i = 0; i < a.data.size(); ++i) sum += dot(a.data[i], b.data[i]);
  return sum;
}

/// Step sizes and tolerances of the checks in T.
template <class T>
struct Precision {
  static constexpr double kStep = std::is_same_v<T, double> ? 1e-5 : 1e-2;      ///< finite-difference step
  static constexpr double kGradient = std::is_same_v<T, double> ? 1e-6 : 3e-2;  ///< gradient vs differences
  static constexpr double kSame = std::is_same_v<T, double> ? 1e-10 : 2e-4;     ///< two ways to one value
};

/// Central finite differences of a scalar loss against analytic gradients, at up to six
/// entries of each tensor spread over it (the first and the last included).
template <class T>
class FiniteDifferences {
 public:
  /// Perturbs `values` entry by entry, calling `loss()` (which reads them) twice per entry.
  template <class Loss>
  void compare(std::vector<T>& values, const std::vector<T>& analytic, Loss&& loss) {
    const std::size_t n = std::min<std::size_t>(values.size(), 6);
    for (std::size_t k = 0; k < n; ++k) {
      const std::size_t i = n == 1 ? 0 : k * (values.size() - 1) / (n - 1);
      const T kept = values[i];
      values[i] = static_cast<T>(kept + Precision<T>::kStep);
      const double plus = loss();
      values[i] = static_cast<T>(kept - Precision<T>::kStep);
      const double minus = loss();
      values[i] = kept;
      const double numeric = (plus - minus) / (2.0 * Precision<T>::kStep);
      worst_ = std::max(worst_, std::abs(numeric - static_cast<double>(analytic[i])) / std::max(1.0, std::abs(numeric)));
      ++compared_;
    }
  }

  /// The check, named for what was perturbed.
  [[nodiscard]] ConformanceCheck check(const std::string& what) const {
    return measured(fmt::format("gradients match {} finite differences ({})", std::is_same_v<T, double> ? "f64" : "f32",
                                what),
                    worst_, Precision<T>::kGradient, fmt::format("{} entries", compared_));
  }

 private:
  double worst_ = 0.0;
  std::size_t compared_ = 0;
};

/// The check that a second backward into the first one's gradients (`once_*`) left twice them
/// (`twice_*`).
template <class T>
ConformanceCheck accumulation_check(const std::vector<T>& once_input, const Tensors<T>& once_params,
                                    const std::vector<T>& twice_input, const Tensors<T>& twice_params) {
  std::vector<T> expected, got = twice_input;
  for (const T value : once_input) expected.push_back(2 * value);
  for (std::size_t p = 0; p < once_params.data.size(); ++p) {
    for (std::size_t i = 0; i < once_params.data[p].size(); ++i) {
      expected.push_back(2 * once_params.data[p][i]);
      got.push_back(twice_params.data[p][i]);
    }
  }
  return measured("gradients accumulate (+=) into what the caller passes", max_relative_error(got, expected),
                  Precision<T>::kSame, "a second backward into the first one's gradients gives twice them");
}

/// A CPU context with the host's own workspace and kernel choice ("auto" for every kind).
struct HostContext {
  model::HeapWorkspace workspace;
  plugins::KernelRegistry kernels;
  sdk::Context context;

  HostContext(const PluginHost& host, int n_threads) : kernels(host, {}) {
    context.n_threads = n_threads;
    context.workspace = &workspace;
    context.kernels = &kernels;
  }
};

/// Runs `body`, turning a mambakit::Error into a failed check of `name`.
template <class Body>
ConformanceCheck attempt(const std::string& name, Body&& body) {
  try {
    return body();
  } catch (const std::exception& error) {
    return {name, false, false, error.what()};
  }
}

/// Creates the component from `config` with `create` (returning its pointer), and records two
/// checks: that it was created, and that the same config with an option no component knows is
/// refused with a message naming it. Returns nullptr when the component could not be created.
template <class Create>
auto created_with_checks(Create&& create, const nlohmann::json& config, std::vector<ConformanceCheck>& checks)
    -> decltype(create(std::string())) {
  decltype(create(std::string())) component;
  try {
    component = create(config.dump());
  } catch (const Error& error) {
    checks.push_back({"created with the given options", false, false, error.what()});
    return component;
  }
  checks.push_back({"created with the given options", true, false, config.dump()});
  nlohmann::json bogus = config;
  bogus["conformance_unknown_option"] = 1;
  std::string refusal;
  try {
    static_cast<void>(create(bogus.dump()));
  } catch (const Error& error) {
    refusal = error.what();
  }
  checks.push_back({"an unknown option is refused, naming it",
                    refusal.find("conformance_unknown_option") != std::string::npos, false,
                    refusal.empty() ? "the factory accepted {\"conformance_unknown_option\": 1}" : refusal});
  return component;
}

/// check_param_declarations() for one tensor spec's shape: rank, extents of at least
/// `min_extent`, and a size this machine can hold.
inline void check_shape(const sdk::TensorSpec& spec, std::int64_t min_extent, const std::string& owner,
                        const std::string& label) {
  sdk::TensorSpec shape = spec;
  shape.dtype = sdk::DType::kF32;
  model::checked_numel(shape, min_extent, owner, label);
}

/// Checks the parameters a component declares (a count in range, named, well-formed shapes of a
/// size this machine can hold) before any check allocates on its word; throws naming `owner`.
/// The harness holds every tensor in its own element type, so only the shapes are checked here.
template <class Component>
void check_param_declarations(const Component& component, const std::string& owner) {
  const std::int32_t count = model::checked_count(component.param_count(), owner, "parameters");
  for (std::int32_t i = 0; i < count; ++i) {
    sdk::ParamSpec spec;
    require_ok(component.param_spec(i, &spec), owner + " param_spec");
    const std::string name = model::checked_name(spec.tensor, owner, "parameter", i);
    check_shape(spec.tensor, 1, owner, "parameter " + name);
  }
}

/// Records the check "declarations are well-formed": `body` runs the component's declaration
/// checks and throws on the first problem. Returns whether it passed (the other checks would
/// otherwise allocate or loop on the component's word).
template <class Body>
bool declarations_checked(std::vector<ConformanceCheck>& checks, Body&& body) {
  try {
    body();
  } catch (const Error& error) {
    checks.push_back({"declarations are well-formed", false, false, error.what()});
    return false;
  }
  checks.push_back({"declarations are well-formed", true, false,
                    "counts, names and shapes of the parameters and the tensors it asks the host for"});
  return true;
}

}  // namespace mambakit::conformance
