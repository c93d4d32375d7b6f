// The decode projection (plugins/common/few_rows.hpp): y = x W^T + bias for a few rows, with W
// in f32, bf16 or f16. Checked against a double-precision product of the same (widened)
// weights, and for the property batched generation relies on: a row's result is bit-identical
// whatever rows are computed with it and however many threads share the outputs.

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "mambakit/sdk/util/few_rows.hpp"
#include "mambakit/sdk/half.hpp"
#include "simulated_speeds.hpp"

namespace sdk = mambakit::sdk;
using mambakit::sdk::util::linear_few_rows;
using mambakit::sdk::util::linear_few_rows_range;
using mambakit::sdk::util::SpeedShares;

namespace {

/// An (n, k) weight matrix held in `dtype`, with its values as f32 (what the kernel must use).
struct Weights {
  std::vector<float> f32;
  std::vector<std::uint16_t> bits;
  std::vector<float> values;
  sdk::TensorView view;
};

Weights random_weights(std::int64_t n, std::int64_t k, sdk::DType dtype, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  Weights w;
  w.values.resize(static_cast<std::size_t>(n * k));
  for (float& v : w.values) v = normal(rng);
  if (dtype == sdk::DType::kF32) {
    w.f32 = w.values;
  } else {
    w.bits.resize(w.values.size());
    for (std::size_t i = 0; i < w.values.size(); ++i) {
      w.bits[i] = dtype == sdk::DType::kBF16 ? sdk::f32_to_bf16(w.values[i]) : sdk::f32_to_f16(w.values[i]);
      w.values[i] = dtype == sdk::DType::kBF16 ? sdk::bf16_to_f32(w.bits[i]) : sdk::f16_to_f32(w.bits[i]);
    }
  }
  w.view.data = dtype == sdk::DType::kF32 ? static_cast<void*>(w.f32.data()) : static_cast<void*>(w.bits.data());
  w.view.dtype = dtype;
  w.view.rank = 2;
  w.view.shape[0] = n;
  w.view.shape[1] = k;
  w.view.strides[0] = k;
  w.view.strides[1] = 1;
  return w;
}

std::vector<float> random_vector(std::int64_t count, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(static_cast<std::size_t>(count));
  for (float& e : v) e = normal(rng);
  return v;
}

}  // namespace

TEST_CASE("few-rows product equals a double-precision product for every weight type and shape") {
  std::mt19937 rng(17);
  for (const sdk::DType dtype : {sdk::DType::kF32, sdk::DType::kBF16, sdk::DType::kF16}) {
    for (const std::int64_t k : {1, 15, 16, 31, 32, 48, 65, 100, 768}) {
      for (const std::int64_t m : {1, 2, 3, 5, 8}) {
        const std::int64_t n = 37, ldx = k + 3, ldy = n + 2;  // row strides wider than the rows
        const Weights w = random_weights(n, k, dtype, rng);
        const std::vector<float> x = random_vector(m * ldx, rng), bias = random_vector(n, rng);
        std::vector<float> y(static_cast<std::size_t>(m * ldy), -7.0f);
        SpeedShares shares;
        linear_few_rows(x.data(), ldx, w.view, bias.data(), y.data(), ldy, m, k, n, 2, shares);
        double worst = 0.0;
        for (std::int64_t r = 0; r < m; ++r) {
          for (std::int64_t j = 0; j < n; ++j) {
            double expected = bias[j], magnitude = std::abs(bias[j]);
            for (std::int64_t i = 0; i < k; ++i) {
              expected += static_cast<double>(w.values[j * k + i]) * x[r * ldx + i];
              magnitude += std::abs(static_cast<double>(w.values[j * k + i]) * x[r * ldx + i]);
            }
            worst = std::max(worst, std::abs(y[r * ldy + j] - expected) / magnitude);
          }
          for (std::int64_t j = n; j < ldy; ++j) REQUIRE(y[r * ldy + j] == -7.0f);  // padding untouched
        }
        INFO(sdk::dtype_name(dtype) << " m=" << m << " k=" << k);
        CHECK(worst < 1e-6);
      }
    }
  }
}

TEST_CASE("few-rows product: a row's result does not depend on the other rows or the threads") {
  std::mt19937 rng(5);
  const std::int64_t n = 53, k = 200, m = 7;
  for (const sdk::DType dtype : {sdk::DType::kF32, sdk::DType::kBF16, sdk::DType::kF16}) {
    const Weights w = random_weights(n, k, dtype, rng);
    const std::vector<float> x = random_vector(m * k, rng);
    std::vector<float> together(static_cast<std::size_t>(m * n));
    SpeedShares equal;
    linear_few_rows(x.data(), k, w.view, nullptr, together.data(), n, m, k, n, 2, equal);
    for (std::int64_t r = 0; r < m; ++r) {
      for (const int threads : {1, 3}) {
        std::vector<float> alone(static_cast<std::size_t>(n));
        SpeedShares shares;
        linear_few_rows(x.data() + r * k, k, w.view, nullptr, alone.data(), n, 1, k, n, threads, shares);
        for (std::int64_t j = 0; j < n; ++j) REQUIRE(alone[j] == together[r * n + j]);
      }
    }
    // Shares skewed towards one thread (as after it measured faster) give the same results.
    SpeedShares skewed;
    mambakit::test::record_calls(skewed, {3.0, 1.0}, 100);
    REQUIRE(skewed.plan(2).fraction(0) > 0.7);
    std::vector<float> split(static_cast<std::size_t>(m * n));
    linear_few_rows(x.data(), k, w.view, nullptr, split.data(), n, m, k, n, 2, skewed);
    REQUIRE(split == together);
    // A range of outputs computed on its own equals the same outputs of the whole product.
    std::vector<float> range(static_cast<std::size_t>(m * n), 0.0f);
    linear_few_rows_range(x.data(), k, w.view, nullptr, range.data(), n, m, k, 11, 30);
    for (std::int64_t r = 0; r < m; ++r) {
      for (std::int64_t j = 0; j < n; ++j) {
        REQUIRE(range[r * n + j] == (j >= 11 && j < 30 ? together[r * n + j] : 0.0f));
      }
    }
  }
}

TEST_CASE("few-rows product rejects weights of another type") {
  std::vector<double> data(4, 1.0);
  sdk::TensorView view;
  view.data = data.data();
  view.dtype = sdk::DType::kF64;
  view.rank = 2;
  view.shape[0] = 2;
  view.shape[1] = 2;
  view.strides[0] = 2;
  view.strides[1] = 1;
  std::vector<float> x(2, 1.0f), y(2);
  SpeedShares shares;
  REQUIRE_THROWS_WITH(linear_few_rows(x.data(), 2, view, nullptr, y.data(), 2, 1, 2, 2, 1, shares),
                      Catch::Matchers::Contains("f32, f16, bf16 or int8"));
}
