// mixer/s6 backward against central finite differences of its own forward in double precision
// (f64 parameters make the mixer and the scan run in f64), with every registered scan backend
// that has an f64 backward pass; then the f32 path's gradients, with every backend that has a
// backward (f32 only ones included), against those f64 gradients.
//
// Loss: sum(y * w_y) + sum(final_conv_state * w_conv) + sum(final_ssm_state * w_ssm) with
// random weights, so every upstream gradient (grad_y and both grad_final_state tensors) is
// non-zero. Checked: every parameter's gradient, grad_x and, when the initial state is given,
// both grad_initial_state tensors; d_model 8, d_state 4, expand 2, dt_rank 2, d_conv 3 and 4,
// with and without in/out_proj bias and conv bias, batch 2, lengths 1, 2, 5, 9 (shorter and
// longer than d_conv), initial state absent and present. Parameters have the scales of the
// golden fixtures (tests/data/README.md). Tolerance: see gradient_check.hpp. The largest error
// per tensor kind and backend, relative to the tensor's largest gradient, is printed.
//
// Also: forward with saved activations gives the same outputs as without; gradients
// accumulate (+=); frozen parameters (absent gradient views) leave grad_x unchanged; the
// workspace is returned after every call.

#include <catch2/catch.hpp>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "fixtures.hpp"
#include "gradient_check.hpp"
#include "mambakit/sdk/mixer.hpp"
#include "mambakit/sdk/scan_backend.hpp"
#include "test_tensors.hpp"
#include "test_workspace.hpp"

namespace sdk = mambakit::sdk;
using mambakit::test::compare_gradient;
using mambakit::test::finite_differences;
using mambakit::test::GradientComparison;
using mambakit::test::make_tensor;
using mambakit::test::Tensor;
using mambakit::test::TestWorkspace;
using mambakit::test::views;
using mambakit::test::weighted_sum;

namespace {

struct MixerVariant {
  std::int64_t d_conv;
  bool bias;
  bool conv_bias;

  [[nodiscard]] std::string config() const {
    return std::string(R"({"d_model": 8, "d_state": 4, "expand": 2, "dt_rank": 2, "d_conv": )") +
           std::to_string(d_conv) + R"(, "bias": )" + (bias ? "true" : "false") + R"(, "conv_bias": )" +
           (conv_bias ? "true" : "false") + "}";
  }
  [[nodiscard]] std::string label() const {
    return "d_conv " + std::to_string(d_conv) + (bias ? ", bias" : ", no bias") +
           (conv_bias ? ", conv bias" : ", no conv bias");
  }
};

const MixerVariant kVariants[] = {{4, false, true}, {3, false, true}, {4, true, false}, {3, true, true}};

/// Names of the CPU scan backends that have a backward pass for problems of `dtype`.
std::vector<std::string> backward_scan_names(sdk::DType dtype) {
  const auto& host = mambakit::test::in_tree_plugins();
  std::vector<std::string> names;
  for (const auto& name : mambakit::test::scan_names(host)) {
    sdk::ScanCapabilities capabilities;
    mambakit::test::create_scan(host, name)->capabilities(&capabilities);
    if (capabilities.backward && (capabilities.devices & sdk::device_bit(sdk::DeviceType::kCpu)) != 0 &&
        (capabilities.dtypes & sdk::dtype_bit(dtype)) != 0) {
      names.push_back(name);
    }
  }
  return names;
}

/// One mixer with random parameters, input, initial state and loss weights, and a context
/// with the given scan backend.
template <class T>
class MixerProblem {
 public:
  struct Outputs {
    std::vector<Tensor<T>> final_state, saved;
    Tensor<T> y;
  };
  struct Gradients {
    std::vector<Tensor<T>> params, initial_state;
    Tensor<T> x;
  };

  MixerProblem(sdk::Mixer& mixer, sdk::ScanBackend& scan, std::int64_t batch, std::int64_t length,
               bool with_initial_state, std::uint32_t seed)
      : mixer_(mixer), batch_(batch), length_(length), with_initial_state_(with_initial_state) {
    context_.kernels = mambakit::test::fixed_kernels(&scan);
    context_.workspace = &workspace_;
    context_.n_threads = 1;
    std::mt19937 rng(seed);
    std::uniform_real_distribution<double> unit(-1.0, 1.0);
    auto uniform = [&](std::vector<T>& v, double bound) {
      for (auto& value : v) value = static_cast<T>(bound * unit(rng));
    };
    for (std::int32_t i = 0; i < mixer.param_count(); ++i) {
      sdk::ParamSpec spec;
      REQUIRE(mixer.param_spec(i, &spec).ok());
      params.push_back(make_tensor<T>(spec.tensor));
      initialise(params.back(), rng);
    }
    for (std::int32_t i = 0; i < mixer.state_count(); ++i) {
      sdk::TensorSpec spec;
      REQUIRE(mixer.state_spec(i, batch, &spec).ok());
      initial_state.push_back(make_tensor<T>(spec));
      uniform(initial_state.back().values, 1.0);
      state_weights_.push_back(initial_state.back());
      uniform(state_weights_.back().values, 1.0);
    }
    d_model_ = params.front().shape[1];  // in_proj.weight (2E, D)
    x = Tensor<T>{"x", {batch, length, d_model_}, std::vector<T>(static_cast<std::size_t>(batch * length * d_model_))};
    uniform(x.values, 1.7);  // about unit variance, as after RMSNorm
    y_weights_ = x;
    uniform(y_weights_.values, 1.0);
  }

  MixerProblem(const MixerProblem&) = delete;
  MixerProblem& operator=(const MixerProblem&) = delete;

  sdk::Context& context() { return context_; }
  bool with_initial_state() const { return with_initial_state_; }
  std::ptrdiff_t workspace_live() const { return workspace_.live(); }

  Outputs forward(bool save) {
    Outputs out;
    out.y = Tensor<T>{"y", x.shape, std::vector<T>(x.values.size(), NAN)};
    for (const auto& state : initial_state) {
      out.final_state.push_back(state);
      std::fill(out.final_state.back().values.begin(), out.final_state.back().values.end(), NAN);
    }
    if (save) {
      for (std::int32_t i = 0; i < mixer_.saved_count(); ++i) {
        sdk::TensorSpec spec;
        REQUIRE(mixer_.saved_spec(i, batch_, length_, &spec).ok());
        out.saved.push_back(make_tensor<T>(spec));
        std::fill(out.saved.back().values.begin(), out.saved.back().values.end(), NAN);
      }
    }
    auto param_views = views(params);
    auto initial_views = views(initial_state);
    auto final_views = views(out.final_state);
    auto saved_views = views(out.saved);
    sdk::MixerForwardArgs args;
    args.params = param_views.data();
    args.x = x.view();
    args.y = out.y.view();
    args.initial_state = with_initial_state_ ? initial_views.data() : nullptr;
    args.final_state = final_views.data();
    args.saved = save ? saved_views.data() : nullptr;
    const sdk::Status status = mixer_.forward(context_, args);
    INFO(status.message);
    REQUIRE(status.ok());
    return out;
  }

  /// sum(y * w_y) + sum over states of sum(final_state * w_state).
  double loss(const Outputs& out) const {
    double total = weighted_sum(out.y.values, y_weights_.values);
    for (std::size_t i = 0; i < out.final_state.size(); ++i) {
      total += weighted_sum(out.final_state[i].values, state_weights_[i].values);
    }
    return total;
  }
  double loss() { return loss(forward(false)); }

  /// Zero gradients shaped like the parameters, x and the initial state.
  Gradients zero_gradients() const {
    Gradients grads{params, initial_state, x};
    for (auto* group : {&grads.params, &grads.initial_state}) {
      for (auto& tensor : *group) std::fill(tensor.values.begin(), tensor.values.end(), T(0));
    }
    std::fill(grads.x.values.begin(), grads.x.values.end(), T(0));
    return grads;
  }

  /// Backward of the loss, accumulated into `grads`. Parameters with frozen[i] get an absent
  /// gradient view.
  void backward(Outputs& forward_outputs, Gradients& grads, const std::vector<bool>& frozen = {}) {
    auto param_views = views(params);
    auto initial_views = views(initial_state);
    auto saved_views = views(forward_outputs.saved);
    auto grad_param_views = views(grads.params);
    for (std::size_t i = 0; i < frozen.size(); ++i) {
      if (frozen[i]) grad_param_views[i] = sdk::TensorView{};
    }
    auto grad_initial_views = views(grads.initial_state);
    auto grad_final_views = views(state_weights_);
    sdk::MixerBackwardArgs args;
    args.params = param_views.data();
    args.x = x.view();
    args.initial_state = with_initial_state_ ? initial_views.data() : nullptr;
    args.saved = saved_views.data();
    args.grad_y = y_weights_.view();
    args.grad_final_state = grad_final_views.data();
    args.grad_x = grads.x.view();
    args.grad_params = grad_param_views.data();
    args.grad_initial_state = grad_initial_views.data();
    const sdk::Status status = mixer_.backward(context_, args);
    INFO(status.message);
    REQUIRE(status.ok());
  }

  std::vector<Tensor<T>> params, initial_state;
  Tensor<T> x;

 private:
  /// The scales of the golden fixtures (tests/data/README.md).
  static void initialise(Tensor<T>& tensor, std::mt19937& rng) {
    std::uniform_real_distribution<double> unit(-1.0, 1.0);
    std::normal_distribution<double> normal(0.0, 1.0);
    const double fan_in = static_cast<double>(tensor.shape.back());
    const std::string& name = tensor.name;
    double bound = 1.0 / std::sqrt(fan_in);
    if (name == "x_proj.weight") bound *= 4.0;
    if (name == "out_proj.weight") bound *= 2.0;
    if (name == "in_proj.bias" || name == "out_proj.bias") bound = 0.2;
    if (name == "conv1d.bias") bound = 0.5;  // U(+-1/sqrt(d_conv)), d_conv 3 or 4
    for (std::size_t i = 0; i < tensor.values.size(); ++i) {
      double value = bound * unit(rng);
      if (name == "dt_proj.bias") {
        const double dt = std::exp(std::log(1e-3) + (std::log(1e-1) - std::log(1e-3)) * 0.5 * (unit(rng) + 1.0));
        value = std::log(std::expm1(dt));
      } else if (name == "A_log") {
        const auto n = static_cast<double>(i % static_cast<std::size_t>(tensor.shape[1]));
        value = std::log(n + 1.0) + 0.05 * normal(rng);
      } else if (name == "D") {
        value = 1.0 + 0.5 * unit(rng);
      }
      tensor.values[i] = static_cast<T>(value);
    }
  }

  sdk::Mixer& mixer_;
  std::int64_t batch_, length_, d_model_ = 0;
  bool with_initial_state_;
  std::vector<Tensor<T>> state_weights_;
  Tensor<T> y_weights_;
  TestWorkspace workspace_;
  sdk::Context context_;
};

template <class T>
bool identical(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin());
}

}  // namespace

TEST_CASE("mixer/s6 declares saved activations and a backward pass") {
  auto mixer = mambakit::test::in_tree_plugins().create_mixer("s6", kVariants[0].config());
  sdk::MixerCapabilities capabilities;
  mixer->capabilities(&capabilities);
  CHECK(capabilities.backward);
  REQUIRE(mixer->saved_count() == 3);
  const std::int64_t E = 16, W = 2 + 2 * 4;
  const std::int64_t widths[] = {2 * E, W, E};
  for (std::int32_t i = 0; i < mixer->saved_count(); ++i) {
    sdk::TensorSpec spec;
    REQUIRE(mixer->saved_spec(i, 3, 7, &spec).ok());
    CHECK(spec.dtype == sdk::DType::kF32);
    REQUIRE(spec.rank == 3);
    CHECK(spec.shape[0] == 3);
    CHECK(spec.shape[1] == 7);
    CHECK(spec.shape[2] == widths[i]);
  }
  sdk::TensorSpec spec;
  CHECK_FALSE(mixer->saved_spec(3, 3, 7, &spec).ok());
}

TEST_CASE("mixer/s6 backward matches f64 finite differences, and the f32 path matches f64, for every scan backend") {
  const auto& host = mambakit::test::in_tree_plugins();
  const auto f64_backends = backward_scan_names(sdk::DType::kF64);
  const auto f32_backends = backward_scan_names(sdk::DType::kF32);
  REQUIRE(!f64_backends.empty());
  REQUIRE(f32_backends.size() >= f64_backends.size());
  // backend -> tensor kind -> worst max error / max |gradient|
  std::map<std::string, std::map<std::string, double>> worst, worst_f32;
  std::uint32_t seed = 1234;
  for (const auto& variant : kVariants) {
    auto mixer = host.create_mixer("s6", variant.config());
    for (const std::int64_t length : {1, 2, 5, 9}) {
      for (const bool with_initial_state : {false, true}) {
        ++seed;
        std::vector<std::vector<double>> reference;  // f64 gradients: parameters, x, initial state
        for (const auto& backend : f64_backends) {
          auto scan = mambakit::test::create_scan(host, backend);
          MixerProblem<double> problem(*mixer, *scan, 2, length, with_initial_state, seed);
          INFO(variant.label() << ", L " << length << (with_initial_state ? ", initial state" : ", zero state")
                               << ", scan/" << backend << " in f64");

          // Saving activations does not change the outputs.
          const auto plain = problem.forward(false);
          auto saved = problem.forward(true);
          CHECK(identical(plain.y.values, saved.y.values));
          for (std::size_t i = 0; i < plain.final_state.size(); ++i) {
            CHECK(identical(plain.final_state[i].values, saved.final_state[i].values));
          }

          auto grads = problem.zero_gradients();
          problem.backward(saved, grads);
          CHECK(problem.workspace_live() == 0);

          auto loss = [&] { return problem.loss(); };
          auto check = [&](const std::string& kind, std::vector<double>& values, const std::vector<double>& analytic) {
            const GradientComparison comparison = compare_gradient(analytic, finite_differences(values, loss));
            INFO(kind << ": max error " << comparison.max_error << ", max |gradient| " << comparison.max_gradient
                      << ", tolerance " << comparison.tolerance());
            CHECK(comparison.passes());
            if (reference.size() < problem.params.size() + 1 + problem.initial_state.size()) {
              reference.push_back(analytic);
            }
            // One token from a zero state: h_0 = dt B x does not involve A, so A_log's gradient
            // is exactly zero there (and the relative error meaningless).
            if (kind == "A_log" && length == 1 && !with_initial_state) return;
            CHECK(comparison.max_gradient > 0.0);
            double& entry = worst[backend][kind];
            entry = std::max(entry, comparison.relative());
          };
          for (std::size_t i = 0; i < problem.params.size(); ++i) {
            check(problem.params[i].name, problem.params[i].values, grads.params[i].values);
          }
          check("grad_x", problem.x.values, grads.x.values);
          for (std::size_t i = 0; i < problem.initial_state.size(); ++i) {
            if (with_initial_state) {
              check("initial " + problem.initial_state[i].name, problem.initial_state[i].values,
                    grads.initial_state[i].values);
            } else {
              const auto& values = grads.initial_state[i].values;
              CHECK(std::all_of(values.begin(), values.end(), [](double v) { return v == 0.0; }));
              if (reference.size() < problem.params.size() + 1 + problem.initial_state.size()) {
                reference.push_back(values);
              }
            }
          }
        }

        // The f32 path, on the same problem rounded to f32, against the f64 gradients.
        for (const auto& backend : f32_backends) {
          auto scan = mambakit::test::create_scan(host, backend);
          MixerProblem<float> problem(*mixer, *scan, 2, length, with_initial_state, seed);
          INFO(variant.label() << ", L " << length << (with_initial_state ? ", initial state" : ", zero state")
                               << ", scan/" << backend << " in f32");
          auto saved = problem.forward(true);
          auto grads = problem.zero_gradients();
          problem.backward(saved, grads);
          std::vector<std::pair<std::string, const std::vector<float>*>> tensors;
          for (std::size_t i = 0; i < grads.params.size(); ++i) {
            tensors.emplace_back(problem.params[i].name, &grads.params[i].values);
          }
          tensors.emplace_back("grad_x", &grads.x.values);
          for (std::size_t i = 0; i < grads.initial_state.size(); ++i) {
            tensors.emplace_back("initial " + problem.initial_state[i].name, &grads.initial_state[i].values);
          }
          REQUIRE(tensors.size() == reference.size());
          for (std::size_t i = 0; i < tensors.size(); ++i) {
            const double error = mambakit::test::precision_error(*tensors[i].second, reference[i]);
            INFO(tensors[i].first << ": f32 vs f64 " << error);
            CHECK(error <= mambakit::test::kPrecisionRtol);
            double& entry = worst_f32[backend][tensors[i].first];
            entry = std::max(entry, error);
          }
        }
      }
    }
  }
  std::printf("mixer/s6 backward vs f64 finite differences: max |error| / max |gradient| per tensor\n");
  for (const auto& [backend, kinds] : worst) {
    for (const auto& [kind, error] : kinds) std::printf("  scan/%-10s %-24s %.2e\n", backend.c_str(), kind.c_str(), error);
  }
  std::printf("mixer/s6 f32 gradients vs f64 gradients: max |error| / max |gradient| per tensor\n");
  for (const auto& [backend, kinds] : worst_f32) {
    for (const auto& [kind, error] : kinds) std::printf("  scan/%-10s %-24s %.2e\n", backend.c_str(), kind.c_str(), error);
  }
}

TEST_CASE("mixer/s6 backward accumulates, respects frozen parameters, and is thread-count independent") {
  const auto& host = mambakit::test::in_tree_plugins();
  for (const auto& backend : backward_scan_names(sdk::DType::kF32)) {
    auto scan = mambakit::test::create_scan(host, backend);
    for (const auto& variant : {kVariants[0], kVariants[3]}) {
      auto mixer = host.create_mixer("s6", variant.config());
      MixerProblem<float> problem(*mixer, *scan, 2, 6, true, 77);
      INFO(variant.label() << ", scan/" << backend);
      auto saved = problem.forward(true);
      auto once = problem.zero_gradients();
      problem.backward(saved, once);

      // A second backward into the same buffers doubles every gradient.
      auto twice = problem.zero_gradients();
      problem.backward(saved, twice);
      problem.backward(saved, twice);
      auto check_double = [](const std::vector<float>& single, const std::vector<float>& doubled) {
        double largest = 0.0, error = 0.0;
        for (std::size_t i = 0; i < single.size(); ++i) {
          largest = std::max(largest, std::fabs(2.0 * single[i]));
          error = std::max(error, std::fabs(2.0 * single[i] - doubled[i]));
        }
        CHECK(error <= 1e-6 * largest);
      };
      for (std::size_t i = 0; i < once.params.size(); ++i) check_double(once.params[i].values, twice.params[i].values);
      for (std::size_t i = 0; i < once.initial_state.size(); ++i) {
        check_double(once.initial_state[i].values, twice.initial_state[i].values);
      }
      check_double(once.x.values, twice.x.values);

      // Every parameter frozen: parameter gradients untouched, grad_x and the state gradients
      // as before.
      auto frozen = problem.zero_gradients();
      for (auto& tensor : frozen.params) std::fill(tensor.values.begin(), tensor.values.end(), 5.0f);
      problem.backward(saved, frozen, std::vector<bool>(problem.params.size(), true));
      for (const auto& tensor : frozen.params) {
        CHECK(std::all_of(tensor.values.begin(), tensor.values.end(), [](float v) { return v == 5.0f; }));
      }
      CHECK(mambakit::test::max_abs_difference(frozen.x.values, once.x.values) <= 1e-6);
      for (std::size_t i = 0; i < once.initial_state.size(); ++i) {
        CHECK(mambakit::test::max_abs_difference(frozen.initial_state[i].values, once.initial_state[i].values) <=
              1e-6);
      }

      // Two threads give the same gradients up to rounding.
      problem.context().n_threads = 2;
      auto threaded = problem.zero_gradients();
      problem.backward(saved, threaded);
      for (std::size_t i = 0; i < once.params.size(); ++i) {
        CHECK(mambakit::test::max_abs_difference(threaded.params[i].values, once.params[i].values) <= 1e-5);
      }
      CHECK(mambakit::test::max_abs_difference(threaded.x.values, once.x.values) <= 1e-5);
      CHECK(problem.workspace_live() == 0);
    }
  }
}
