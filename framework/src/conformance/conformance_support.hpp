#pragma once
// What the conformance checks share: host-owned tensors of the component's declared shapes,
// random values from a seeded generator, contexts, and comparisons.

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "../model/heap_workspace.hpp"
#include "../model/kernel_registry.hpp"
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

/// A CPU context with the host's own workspace and kernel choice ("auto" for every kind).
struct HostContext {
  model::HeapWorkspace workspace;
  model::KernelRegistry kernels;
  sdk::Context context;

  HostContext(const PluginHost& host, int n_threads) : kernels(host, {}) {
    context.n_threads = n_threads;
    context.workspace = &workspace;
    context.kernels = &kernels;
  }
};

/// A check from a measured error and its tolerance.
inline ConformanceCheck measured(const std::string& name, double error, double tolerance, const std::string& what) {
  ConformanceCheck check{name, error <= tolerance, false, ""};
  check.detail = fmt::format("{}: max relative error {:.3g} (tolerance {:.1g})", what, error, tolerance);
  return check;
}

inline ConformanceCheck skipped(const std::string& name, const std::string& why) { return {name, true, true, why}; }

/// Runs `body`, turning a mambakit::Error into a failed check of `name`.
template <class Body>
ConformanceCheck attempt(const std::string& name, Body&& body) {
  try {
    return body();
  } catch (const std::exception& error) {
    return {name, false, false, error.what()};
  }
}

/// The error of a factory call with an option the component cannot know, or "" when it
/// accepted the option.
template <class Create>
std::string unknown_option_error(Create&& create, const std::string& config_with_bogus_key) {
  try {
    create(config_with_bogus_key);
  } catch (const Error& error) {
    return error.what();
  }
  return "";
}

}  // namespace mambakit::conformance
