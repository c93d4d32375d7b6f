// head/lm, head/classification and head/features backward against central finite differences
// of their forward, in double precision (the heads run in f64 with f64 parameters):
// loss = sum(output * w) with random w; every parameter gradient and
// grad_hidden. Batch 2, lengths 1, 5, 9, per-row lengths absent and present (right padding;
// padding tokens must get no gradient), every pooling. Hidden states are drawn so that no two
// tokens of a row are within 0.3 of each other in any feature, so max pooling's choice does not
// flip under the finite-difference steps. Tolerance: see gradient_check.hpp. The f32 path's
// gradients of the same problem are then compared with the f64 ones.

#include <catch2/catch.hpp>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "fixtures.hpp"
#include "gradient_check.hpp"
#include "mambakit/sdk/head.hpp"
#include "test_workspace.hpp"

namespace sdk = mambakit::sdk;
using mambakit::test::compare_gradient;
using mambakit::test::finite_differences;
using mambakit::test::GradientComparison;
using mambakit::test::weighted_sum;

namespace {

template <class T>
sdk::TensorView view(std::vector<T>& values, const std::vector<std::int64_t>& shape) {
  const sdk::DType dtype = sizeof(T) == sizeof(double) ? sdk::DType::kF64 : sdk::DType::kF32;
  return sdk::make_view(values.data(), dtype, sdk::Device{}, shape.data(),
                        static_cast<std::int32_t>(shape.size()));
}

/// A head with random parameters, hidden states, optional per-row lengths and loss weights.
template <class T>
class HeadProblem {
 public:
  HeadProblem(sdk::Head& head, std::int64_t batch, std::int64_t length, std::int64_t d_model, bool with_lengths,
              std::uint32_t seed)
      : head_(head), batch_(batch), length_(length), d_model_(d_model) {
    context_.workspace = &workspace_;
    std::mt19937 rng(seed);
    std::uniform_real_distribution<double> unit(-1.0, 1.0);
    for (std::int32_t i = 0; i < head.param_count(); ++i) {
      sdk::ParamSpec spec;
      REQUIRE(head.param_spec(i, &spec).ok());
      param_shapes.emplace_back(spec.tensor.shape, spec.tensor.shape + spec.tensor.rank);
      std::vector<T> values(static_cast<std::size_t>(spec.tensor.numel()));
      // lm: N(0, 0.5)-like (the fixtures' head scale); classifier: U(+-1/sqrt(D)), bias U(+-0.2).
      const double bound = spec.tensor.rank == 1 ? 0.2 : (head.param_count() == 1 ? 0.8 : 1.0 / std::sqrt(d_model));
      for (auto& v : values) v = static_cast<T>(bound * unit(rng));
      params.push_back(std::move(values));
    }
    // Feature d of row b: a random permutation of the positions, spaced 0.5 apart, plus noise
    // of at most 0.1, so values of one column are at least 0.3 apart.
    hidden.assign(static_cast<std::size_t>(batch * length * d_model), T(0));
    std::vector<int> order(static_cast<std::size_t>(length));
    for (std::int64_t b = 0; b < batch; ++b) {
      for (std::int64_t d = 0; d < d_model; ++d) {
        std::iota(order.begin(), order.end(), 0);
        std::shuffle(order.begin(), order.end(), rng);
        for (std::int64_t t = 0; t < length; ++t) {
          hidden[(b * length + t) * d_model + d] =
              static_cast<T>(0.5 * (order[t] - 0.5 * static_cast<double>(length - 1)) + 0.1 * unit(rng));
        }
      }
    }
    if (with_lengths) {
      for (std::int64_t b = 0; b < batch; ++b) {
        lengths.push_back(static_cast<std::int32_t>(std::max<std::int64_t>(1, length - 3 * b)));
      }
    }
    output_weights = forward();
    for (auto& v : output_weights) v = static_cast<T>(unit(rng));
  }

  std::vector<T> forward() {
    sdk::TensorSpec spec;
    REQUIRE(head_.output_spec(batch_, length_, &spec).ok());
    std::vector<T> output(static_cast<std::size_t>(spec.numel()), NAN);
    auto param_views = make_param_views(params);
    sdk::HeadForwardArgs args;
    args.params = param_views.data();
    args.hidden = view(hidden, {batch_, length_, d_model_});
    args.lengths = lengths_view();
    args.output = view(output, std::vector<std::int64_t>(spec.shape, spec.shape + spec.rank));
    const sdk::Status status = head_.forward(context_, args);
    INFO(status.message);
    REQUIRE(status.ok());
    return output;
  }

  double loss() { return weighted_sum(forward(), output_weights); }

  /// Backward of loss(), accumulated into grad_params and grad_hidden.
  void backward(std::vector<std::vector<T>>& grad_params, std::vector<T>& grad_hidden) {
    sdk::TensorSpec spec;
    REQUIRE(head_.output_spec(batch_, length_, &spec).ok());
    auto param_views = make_param_views(params);
    auto grad_views = make_param_views(grad_params);
    sdk::HeadBackwardArgs args;
    args.params = param_views.data();
    args.hidden = view(hidden, {batch_, length_, d_model_});
    args.lengths = lengths_view();
    args.grad_output = view(output_weights, std::vector<std::int64_t>(spec.shape, spec.shape + spec.rank));
    args.grad_hidden = view(grad_hidden, {batch_, length_, d_model_});
    args.grad_params = grad_views.data();
    const sdk::Status status = head_.backward(context_, args);
    INFO(status.message);
    REQUIRE(status.ok());
  }

  /// The gradients of loss(): every parameter's, then the hidden states'.
  std::vector<std::vector<T>> gradients() {
    std::vector<std::vector<T>> grad_params;
    for (const auto& p : params) grad_params.emplace_back(p.size(), T(0));
    std::vector<T> grad_hidden(hidden.size(), T(0));
    backward(grad_params, grad_hidden);
    grad_params.push_back(std::move(grad_hidden));
    return grad_params;
  }

  /// Checks every gradient against finite differences; returns the worst relative error.
  double check_gradients() {
    std::vector<std::vector<T>> grad_params = gradients();
    std::vector<T> grad_hidden = std::move(grad_params.back());
    grad_params.pop_back();
    double worst = 0.0;
    auto loss_fn = [&] { return loss(); };
    auto check = [&](const std::string& what, std::vector<T>& values, const std::vector<T>& analytic) {
      const GradientComparison comparison = compare_gradient(analytic, finite_differences(values, loss_fn));
      INFO(what << ": max error " << comparison.max_error << ", max |gradient| " << comparison.max_gradient);
      CHECK(comparison.passes());
      CHECK(comparison.max_gradient > 0.0);
      worst = std::max(worst, comparison.relative());
    };
    for (std::size_t i = 0; i < params.size(); ++i) check("parameter " + std::to_string(i), params[i], grad_params[i]);
    check("grad_hidden", hidden, grad_hidden);
    // Padding tokens get exactly nothing.
    for (std::size_t b = 0; b < lengths.size(); ++b) {
      for (std::int64_t t = lengths[b]; t < length_; ++t) {
        for (std::int64_t d = 0; d < d_model_; ++d) {
          CHECK(grad_hidden[(static_cast<std::int64_t>(b) * length_ + t) * d_model_ + d] == T(0));
        }
      }
    }
    // Accumulation: a second backward adds the same again.
    auto again_params = grad_params;
    auto again_hidden = grad_hidden;
    backward(again_params, again_hidden);
    for (std::size_t i = 0; i < grad_hidden.size(); ++i) CHECK(again_hidden[i] == Approx(2.0 * grad_hidden[i]).margin(1e-6));
    for (std::size_t p = 0; p < params.size(); ++p) {
      for (std::size_t i = 0; i < grad_params[p].size(); ++i) {
        CHECK(again_params[p][i] == Approx(2.0 * grad_params[p][i]).margin(1e-6));
      }
    }
    return worst;
  }

  std::vector<std::vector<T>> params;
  std::vector<std::vector<std::int64_t>> param_shapes;
  std::vector<T> hidden, output_weights;
  std::vector<std::int32_t> lengths;

 private:
  std::vector<sdk::TensorView> make_param_views(std::vector<std::vector<T>>& tensors) {
    std::vector<sdk::TensorView> result;
    for (std::size_t i = 0; i < tensors.size(); ++i) result.push_back(view(tensors[i], param_shapes[i]));
    return result;
  }

  sdk::TensorView lengths_view() {
    if (lengths.empty()) return sdk::TensorView{};
    return sdk::make_view(lengths.data(), sdk::DType::kI32, sdk::Device{}, {batch_});
  }

  sdk::Head& head_;
  std::int64_t batch_, length_, d_model_;
  mambakit::test::TestWorkspace workspace_;
  sdk::Context context_;
};

void check_head(const std::string& name, const std::string& config, bool lengths_matter) {
  auto head = mambakit::test::in_tree_plugins().create_head(name, config);
  sdk::HeadCapabilities capabilities;
  head->capabilities(&capabilities);
  CHECK(capabilities.backward);
  double worst = 0.0, worst_f32 = 0.0;
  std::uint32_t seed = 99;
  for (const std::int64_t length : {1, 5, 9}) {
    for (const bool with_lengths : {false, true}) {
      if (with_lengths && !lengths_matter) continue;
      INFO("head/" << name << " " << config << ", L " << length << (with_lengths ? ", with lengths" : ""));
      HeadProblem<double> problem(*head, 2, length, 8, with_lengths, ++seed);
      worst = std::max(worst, problem.check_gradients());
      // The f32 path on the same problem (values rounded to f32) agrees with the f64 gradients.
      HeadProblem<float> single(*head, 2, length, 8, with_lengths, seed);
      const auto f64 = problem.gradients();
      const auto f32 = single.gradients();
      for (std::size_t i = 0; i < f64.size(); ++i) {
        const double error = mambakit::test::precision_error(f32[i], f64[i]);
        INFO("gradient " << i << " f32 vs f64: " << error);
        CHECK(error <= mambakit::test::kPrecisionRtol);
        worst_f32 = std::max(worst_f32, error);
      }
    }
  }
  std::printf("head/%s %s backward vs f64 finite differences: max |error| / max |gradient| %.2e; f32 vs f64 %.2e\n",
              name.c_str(), config.c_str(), worst, worst_f32);
}

}  // namespace

TEST_CASE("head/lm backward matches finite differences, tied and untied") {
  check_head("lm", R"({"d_model": 8, "vocab_size": 11, "tie_embeddings": false})", false);
  check_head("lm", R"({"d_model": 8, "vocab_size": 11, "tie_embeddings": true})", false);
}

TEST_CASE("head/classification backward matches finite differences, for every pooling") {
  for (const char* pooling : {"last", "mean", "max"}) {
    check_head("classification", std::string(R"({"d_model": 8, "num_labels": 3, "pooling": ")") + pooling + "\"}",
               true);
  }
}

TEST_CASE("head/features backward matches finite differences, for every pooling") {
  for (const char* pooling : {"none", "last", "mean", "max"}) {
    check_head("features", std::string(R"({"d_model": 8, "pooling": ")") + pooling + "\"}",
               std::string(pooling) != "none");
  }
}
