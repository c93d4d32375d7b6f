// The framework's own layers (RMSNorm, LayerNorm, embedding) backward against central finite differences in
// double precision, and their f32 gradients against the f64 ones. Loss: sum(output * w) with
// random w; gradients of the norm's input and weight and of the embedding table (ids repeat, so
// rows accumulate). Tolerances: see gradient_check.hpp.

#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <vector>

#include "backbone_kernels.hpp"
#include "gradient_check.hpp"

using mambakit::test::compare_gradient;
using mambakit::test::finite_differences;
using mambakit::test::precision_error;
using mambakit::test::weighted_sum;

namespace {

constexpr std::int64_t kRows = 5, kModel = 7, kVocab = 4;
constexpr double kEps = 1e-5;

template <class T>
std::vector<T> random_values(std::size_t count, std::uint32_t seed, double low, double high) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> unit(low, high);
  std::vector<T> values(count);
  for (auto& v : values) v = static_cast<T>(unit(rng));
  return values;
}

/// An RMSNorm problem in type T: input, weight and loss weights.
template <class T>
struct NormProblem {
  std::vector<T> x = random_values<T>(kRows * kModel, 1, -2.0, 2.0);
  std::vector<T> weight = random_values<T>(kModel, 2, 0.5, 1.5);
  std::vector<T> loss_weights = random_values<T>(kRows * kModel, 3, -1.0, 1.0);

  double loss() {
    std::vector<T> out(x.size());
    mambakit::model::rms_norm(x.data(), weight.data(), out.data(), kRows, kModel, kEps, 1);
    return weighted_sum(out, loss_weights);
  }
  /// Gradients of loss() with respect to x and weight.
  std::pair<std::vector<T>, std::vector<T>> gradients(int n_threads) {
    std::vector<T> grad_x(x.size(), T(0)), grad_weight(weight.size(), T(0));
    mambakit::model::rms_norm_backward(x.data(), weight.data(), loss_weights.data(), grad_x.data(),
                                       grad_weight.data(), kRows, kModel, kEps, n_threads);
    return {grad_x, grad_weight};
  }
};

/// A LayerNorm problem in type T: input, weight, bias and loss weights.
template <class T>
struct LayerNormProblem {
  std::vector<T> x = random_values<T>(kRows * kModel, 6, -2.0, 2.0);
  std::vector<T> weight = random_values<T>(kModel, 7, 0.5, 1.5);
  std::vector<T> bias = random_values<T>(kModel, 8, -0.5, 0.5);
  std::vector<T> loss_weights = random_values<T>(kRows * kModel, 9, -1.0, 1.0);

  std::vector<T> forward() {
    std::vector<T> out(x.size());
    mambakit::model::layer_norm(x.data(), weight.data(), bias.data(), out.data(), kRows, kModel, kEps, 1);
    return out;
  }
  double loss() { return weighted_sum(forward(), loss_weights); }
  /// Gradients of loss() with respect to x, weight and bias.
  std::vector<std::vector<T>> gradients(int n_threads) {
    std::vector<T> grad_x(x.size(), T(0)), grad_weight(weight.size(), T(0)), grad_bias(bias.size(), T(0));
    mambakit::model::layer_norm_backward(x.data(), weight.data(), loss_weights.data(), grad_x.data(),
                                         grad_weight.data(), grad_bias.data(), kRows, kModel, kEps, n_threads);
    return {grad_x, grad_weight, grad_bias};
  }
};

const std::int32_t kIds[kRows] = {2, 0, 2, 3, 2};

template <class T>
struct EmbeddingProblem {
  std::vector<T> table = random_values<T>(kVocab * kModel, 4, -1.0, 1.0);
  std::vector<T> loss_weights = random_values<T>(kRows * kModel, 5, -1.0, 1.0);

  double loss() {
    std::vector<T> out(kRows * kModel);
    mambakit::model::embedding_lookup(kIds, table.data(), out.data(), kRows, kModel, 1);
    return weighted_sum(out, loss_weights);
  }
  std::vector<T> gradient() {
    std::vector<T> grad(table.size(), T(0));
    mambakit::model::embedding_backward(kIds, loss_weights.data(), grad.data(), kRows, kModel);
    return grad;
  }
};

}  // namespace

TEST_CASE("RMSNorm backward matches f64 finite differences and f32 matches f64") {
  NormProblem<double> problem;
  for (const int threads : {1, 2}) {
    auto [grad_x, grad_weight] = problem.gradients(threads);
    auto loss = [&] { return problem.loss(); };
    const auto x_check = compare_gradient(grad_x, finite_differences(problem.x, loss));
    const auto w_check = compare_gradient(grad_weight, finite_differences(problem.weight, loss));
    INFO("threads " << threads << ": x " << x_check.relative() << ", weight " << w_check.relative());
    CHECK(x_check.passes());
    CHECK(w_check.passes());
    CHECK(x_check.max_gradient > 0.1);
    CHECK(w_check.max_gradient > 0.1);

    NormProblem<float> single;
    const auto [f32_x, f32_weight] = single.gradients(threads);
    CHECK(precision_error(f32_x, grad_x) <= mambakit::test::kPrecisionRtol);
    CHECK(precision_error(f32_weight, grad_weight) <= mambakit::test::kPrecisionRtol);
  }
}

TEST_CASE("LayerNorm is (x - mean) / sqrt(var + eps) * w + b, its backward matches f64 finite differences") {
  LayerNormProblem<double> problem;
  // The forward against the definition, written out for one row with a two-pass variance.
  const std::vector<double> out = problem.forward();
  for (std::int64_t r = 0; r < kRows; ++r) {
    double mean = 0.0, variance = 0.0;
    for (std::int64_t d = 0; d < kModel; ++d) mean += problem.x[r * kModel + d] / kModel;
    for (std::int64_t d = 0; d < kModel; ++d) variance += std::pow(problem.x[r * kModel + d] - mean, 2) / kModel;
    for (std::int64_t d = 0; d < kModel; ++d) {
      const double expected = (problem.x[r * kModel + d] - mean) / std::sqrt(variance + kEps) * problem.weight[d] +
                              problem.bias[d];
      CHECK(out[r * kModel + d] == Approx(expected).epsilon(1e-12));
    }
  }
  for (const int threads : {1, 2}) {
    const auto grads = problem.gradients(threads);
    auto loss = [&] { return problem.loss(); };
    const auto x_check = compare_gradient(grads[0], finite_differences(problem.x, loss));
    const auto w_check = compare_gradient(grads[1], finite_differences(problem.weight, loss));
    const auto b_check = compare_gradient(grads[2], finite_differences(problem.bias, loss));
    INFO("threads " << threads << ": x " << x_check.relative() << ", weight " << w_check.relative() << ", bias "
                    << b_check.relative());
    CHECK(x_check.passes());
    CHECK(w_check.passes());
    CHECK(b_check.passes());
    CHECK(x_check.max_gradient > 0.1);
    CHECK(w_check.max_gradient > 0.1);

    LayerNormProblem<float> single;
    const auto f32 = single.gradients(threads);
    for (std::size_t i = 0; i < f32.size(); ++i) CHECK(precision_error(f32[i], grads[i]) <= mambakit::test::kPrecisionRtol);
  }
}

TEST_CASE("embedding backward matches f64 finite differences, accumulating repeated ids") {
  EmbeddingProblem<double> problem;
  const auto analytic = problem.gradient();
  auto loss = [&] { return problem.loss(); };
  const auto check = compare_gradient(analytic, finite_differences(problem.table, loss));
  INFO("relative error " << check.relative());
  CHECK(check.passes());
  // Row 1 (id never used) gets nothing; row 2 (used three times) gets three rows' weights.
  for (std::int64_t d = 0; d < kModel; ++d) {
    CHECK(analytic[static_cast<std::size_t>(1 * kModel + d)] == 0.0);
    const double expected = problem.loss_weights[static_cast<std::size_t>(0 * kModel + d)] +
                            problem.loss_weights[static_cast<std::size_t>(2 * kModel + d)] +
                            problem.loss_weights[static_cast<std::size_t>(4 * kModel + d)];
    CHECK(analytic[static_cast<std::size_t>(2 * kModel + d)] == Approx(expected).epsilon(1e-14));
  }
}
