// Int8 weights (sdk/quantized.hpp) and the decode product with them (sdk/util/int8_rows.hpp,
// through few_rows.hpp). The quantization rule is checked on hand-derived rows; every int8 path
// this CPU runs (AVX-512 VNNI, AVX2, scalar) against an f64 product computed here from the
// rule's definition: the stored int8 weights times their scales, and the input rows quantized
// per group by the same rule (an independent implementation in this file); and the properties
// decode relies on: a row's result does not depend on the rows or threads computed with it.

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "mambakit/sdk/quantized.hpp"
#include "mambakit/sdk/util/few_rows.hpp"
#include "mambakit/sdk/util/int8_rows.hpp"

namespace sdk = mambakit::sdk;
namespace util = mambakit::sdk::util;

namespace {

/// An (n, k) matrix quantized by sdk::quantize_row, with its storage.
struct Int8Matrix {
  std::vector<std::int8_t> values;
  std::vector<float> scales;
  sdk::QuantizedMatrix matrix;

  Int8Matrix(const std::vector<float>& weights, std::int64_t n, std::int64_t k, std::int64_t group_size) {
    matrix.rows = n;
    matrix.cols = k;
    matrix.group_size = group_size;
    matrix.groups = sdk::quant_groups(k, group_size);
    matrix.row_stride = sdk::quant_row_stride(k);
    values.assign(static_cast<std::size_t>(n * matrix.row_stride), 0);
    scales.assign(static_cast<std::size_t>(n * matrix.groups), 0.0f);
    for (std::int64_t r = 0; r < n; ++r) {
      sdk::quantize_row(weights.data() + r * k, k, group_size, values.data() + r * matrix.row_stride,
                        scales.data() + r * matrix.groups);
    }
    matrix.values = values.data();
    matrix.scales = scales.data();
  }

  [[nodiscard]] sdk::TensorView view() const {
    return sdk::make_view(const_cast<sdk::QuantizedMatrix*>(&matrix), sdk::DType::kQ8, sdk::Device{},
                          {matrix.rows, matrix.cols});
  }
};

std::vector<float> random_values(std::int64_t count, std::mt19937& rng, float spread = 1.0f) {
  std::normal_distribution<float> normal(0.0f, spread);
  std::vector<float> values(static_cast<std::size_t>(count));
  for (float& v : values) v = normal(rng);
  return values;
}

/// The documented input quantization of one group, in f64: scale max|x| / 127, q = x * 127 /
/// max|x| rounded to nearest even. Returns the dequantized values q * scale.
void quantize_group_f64(const float* x, std::int64_t count, double* out) {
  float largest = 0.0f;
  for (std::int64_t i = 0; i < count; ++i) largest = std::max(largest, std::fabs(x[i]));
  const float scale = largest / 127.0f, inverse = largest > 0.0f ? 127.0f / largest : 0.0f;
  for (std::int64_t i = 0; i < count; ++i) out[i] = std::nearbyint(x[i] * inverse) * static_cast<double>(scale);
}

/// y (m, n) in f64: the dequantized weights times the rows quantized per group, plus bias.
std::vector<double> reference_product(const std::vector<float>& x, const Int8Matrix& w, const std::vector<float>& bias,
                                      std::int64_t m) {
  const sdk::QuantizedMatrix& q = w.matrix;
  std::vector<double> xq(static_cast<std::size_t>(m * q.cols)), y(static_cast<std::size_t>(m * q.rows));
  for (std::int64_t r = 0; r < m; ++r) {
    for (std::int64_t start = 0; start < q.cols; start += q.group_size) {
      quantize_group_f64(x.data() + r * q.cols + start, std::min(q.group_size, q.cols - start),
                         xq.data() + r * q.cols + start);
    }
  }
  for (std::int64_t r = 0; r < m; ++r) {
    for (std::int64_t n = 0; n < q.rows; ++n) {
      double sum = bias.empty() ? 0.0 : bias[static_cast<std::size_t>(n)];
      for (std::int64_t k = 0; k < q.cols; ++k) {
        const double weight = static_cast<double>(q.values[n * q.row_stride + k]) * q.scales[n * q.groups + k / q.group_size];
        sum += weight * xq[static_cast<std::size_t>(r * q.cols + k)];
      }
      y[static_cast<std::size_t>(r * q.rows + n)] = sum;
    }
  }
  return y;
}

std::vector<util::Int8Path> supported_paths() {
  std::vector<util::Int8Path> paths;
  for (auto path : {util::Int8Path::kScalar, util::Int8Path::kAvx2, util::Int8Path::kAvx512Vnni}) {
    if (util::int8_path_supported(path)) paths.push_back(path);
  }
  return paths;
}

}  // namespace

TEST_CASE("int8 quantization of a row follows the documented rule (hand-derived)") {
  // Group 0 (32 values): max |w| = 2.54, scale 0.02; 1.0 / 0.02 = 50, -2.54 -> -127, 0.01 / 0.02
  // = 0.5 -> 0 (ties to even), 0.03 / 0.02 = 1.5 -> 2. Group 1: all zero -> scale 0, values 0.
  std::vector<float> row(64, 0.0f);
  row[0] = 1.0f;
  row[1] = -2.54f;
  row[2] = 0.01f;
  row[3] = 0.03f;
  std::vector<std::int8_t> values(64, 99);
  std::vector<float> scales(2, -1.0f);
  sdk::quantize_row(row.data(), 64, 32, values.data(), scales.data());
  CHECK(scales[0] == Approx(0.02f).epsilon(1e-6));
  CHECK(scales[1] == 0.0f);
  CHECK(values[0] == 50);
  CHECK(values[1] == -127);
  CHECK(values[2] == 0);
  CHECK(values[3] == 2);
  CHECK(values[4] == 0);
  CHECK(values[40] == 0);
  // A partial last group (K = 40, groups of 32): its scale comes from its 8 values only.
  std::vector<float> short_row(40, 0.5f);
  short_row[35] = -4.0f;
  std::vector<std::int8_t> short_values(40);
  std::vector<float> short_scales(2);
  sdk::quantize_row(short_row.data(), 40, 32, short_values.data(), short_scales.data());
  CHECK(short_scales[0] == Approx(0.5f / 127.0f));
  CHECK(short_scales[1] == Approx(4.0f / 127.0f));
  CHECK(short_values[35] == -127);
  CHECK(short_values[36] == 16);  // 0.5 / (4 / 127) = 15.875
}

TEST_CASE("every int8 path matches an f64 product of the dequantized weights and quantized inputs") {
  std::mt19937 rng(7);
  const auto paths = supported_paths();
  INFO("paths run here: " << paths.size() << " (best: " << util::int8_path_name(util::best_int8_path()) << ")");
  for (const std::int64_t group_size : sdk::kQuantGroupSizes) {
    for (const auto& [n, k] : {std::pair<std::int64_t, std::int64_t>{37, 48}, {64, 768}, {19, 100}, {8, 16}, {40, 200}}) {
      const auto weights = random_values(n * k, rng, 0.05f);
      const Int8Matrix w(weights, n, k, group_size);
      const auto bias = random_values(n, rng);
      for (const std::int64_t m : {1, 3, 8}) {
        const auto x = random_values(m * k, rng);
        const auto expected = reference_product(x, w, bias, m);
        for (const auto path : paths) {
          util::QuantizedRows rows;
          rows.quantize(x.data(), k, m, w.matrix);
          std::vector<float> y(static_cast<std::size_t>(m * n), NAN);
          util::linear_int8_rows_range(rows, w.matrix, bias.data(), y.data(), n, 0, n, path);
          double worst = 0.0;
          for (std::size_t i = 0; i < y.size(); ++i) {
            worst = std::max(worst, std::fabs(y[i] - expected[i]) / (1.0 + std::fabs(expected[i])));
          }
          INFO(util::int8_path_name(path) << " n " << n << " k " << k << " m " << m << " groups of " << group_size);
          CHECK(worst < 2e-6);
        }
      }
    }
  }
}

TEST_CASE("the int8 product is within the quantization error of the exact f32 product") {
  // |x_k - xq_k| <= scale_x / 2 and |w_k - wq_k| <= scale_w / 2 per group, so
  // |y - y_exact| <= sum_k (|w_k| scale_x / 2 + |xq_k| scale_w / 2) (hand-derived bound).
  std::mt19937 rng(11);
  const std::int64_t n = 24, k = 300, m = 2, group_size = 64;
  const auto weights = random_values(n * k, rng, 0.05f);
  const Int8Matrix w(weights, n, k, group_size);
  const auto x = random_values(m * k, rng);
  std::vector<float> y(static_cast<std::size_t>(m * n));
  util::SpeedShares shares;
  util::linear_few_rows(x.data(), k, w.view(), nullptr, y.data(), n, m, k, n, 2, shares);
  for (std::int64_t r = 0; r < m; ++r) {
    for (std::int64_t j = 0; j < n; ++j) {
      double exact = 0.0, bound = 0.0;
      for (std::int64_t start = 0; start < k; start += group_size) {
        const std::int64_t end = std::min(start + group_size, k);
        double largest = 0.0;
        for (std::int64_t i = start; i < end; ++i) largest = std::max(largest, std::fabs(double{x[r * k + i]}));
        const double scale_x = largest / 127.0, scale_w = w.scales[static_cast<std::size_t>(j * w.matrix.groups + start / group_size)];
        for (std::int64_t i = start; i < end; ++i) {
          exact += double{weights[j * k + i]} * x[r * k + i];
          bound += std::fabs(double{weights[j * k + i]}) * scale_x / 2 + (std::fabs(double{x[r * k + i]}) + scale_x) * scale_w / 2;
        }
      }
      INFO("row " << r << " output " << j << ": exact " << exact << ", bound " << bound);
      CHECK(std::fabs(y[static_cast<std::size_t>(r * n + j)] - exact) <= bound + 1e-5);
    }
  }
}

TEST_CASE("an int8 row's result does not depend on the rows or threads computed with it") {
  std::mt19937 rng(3);
  const std::int64_t n = 203, k = 384, m = 6;
  const Int8Matrix w(random_values(n * k, rng, 0.05f), n, k, 128);
  const auto x = random_values(m * k, rng);
  util::SpeedShares shares;
  std::vector<float> together(static_cast<std::size_t>(m * n)), one_thread(static_cast<std::size_t>(m * n));
  util::linear_few_rows(x.data(), k, w.view(), nullptr, together.data(), n, m, k, n, 2, shares);
  util::linear_few_rows(x.data(), k, w.view(), nullptr, one_thread.data(), n, m, k, n, 1, shares);
  CHECK(together == one_thread);
  for (std::int64_t r = 0; r < m; ++r) {
    std::vector<float> alone(static_cast<std::size_t>(n));
    util::linear_few_rows(x.data() + r * k, k, w.view(), nullptr, alone.data(), n, 1, k, n, 2, shares);
    CHECK(std::equal(alone.begin(), alone.end(), together.begin() + r * n));
  }
  // Split by hand into uneven ranges, as a mixer's own parallel region does.
  std::vector<float> ranges(static_cast<std::size_t>(m * n));
  for (const auto& [begin, end] : {std::pair<std::int64_t, std::int64_t>{0, 77}, {77, 78}, {78, n}}) {
    util::linear_few_rows_range(x.data(), k, w.view(), nullptr, ranges.data(), n, m, k, begin, end);
  }
  CHECK(ranges == together);
}

TEST_CASE("an input row holding NaN or infinity gives NaN outputs, not a crash") {
  std::mt19937 rng(5);
  const std::int64_t n = 16, k = 64;
  const Int8Matrix w(random_values(n * k, rng, 0.05f), n, k, 32);
  for (const float bad : {NAN, INFINITY}) {
    auto x = random_values(2 * k, rng);
    x[k + 3] = bad;  // row 1 only
    for (const auto path : supported_paths()) {
      util::QuantizedRows rows;
      rows.quantize(x.data(), k, 2, w.matrix);
      std::vector<float> y(static_cast<std::size_t>(2 * n));
      util::linear_int8_rows_range(rows, w.matrix, nullptr, y.data(), n, 0, n, path);
      INFO(util::int8_path_name(path));
      for (std::int64_t j = 0; j < n; ++j) {
        CHECK(std::isfinite(y[static_cast<std::size_t>(j)]));
        CHECK(std::isnan(y[static_cast<std::size_t>(n + j)]));
      }
    }
  }
}

TEST_CASE("the int8 sequence product matches the f64 product and the decode product, on any thread count") {
  std::mt19937 rng(13);
  for (const std::int64_t group_size : sdk::kQuantGroupSizes) {
    for (const auto& [n, k] : {std::pair<std::int64_t, std::int64_t>{37, 48}, {64, 768}, {70, 200}, {3, 16}}) {
      const Int8Matrix w(random_values(n * k, rng, 0.05f), n, k, group_size);
      const auto bias = random_values(n, rng);
      for (const std::int64_t m : {1, 7, 13, 300}) {
        const auto x = random_values(m * k, rng);
        const auto expected = reference_product(x, w, bias, m);
        std::vector<float> one_thread;
        for (const int threads : {1, 2}) {
          std::vector<float> y(static_cast<std::size_t>(m * n), NAN), decoded(static_cast<std::size_t>(m * n));
          util::linear_int8_forward(x.data(), k, w.matrix, bias.data(), y.data(), n, m, threads);
          util::SpeedShares shares;
          util::linear_few_rows(x.data(), k, w.view(), bias.data(), decoded.data(), n, m, k, n, threads, shares);
          double worst = 0.0, apart = 0.0;
          for (std::size_t i = 0; i < y.size(); ++i) {
            worst = std::max(worst, std::fabs(y[i] - expected[i]) / (1.0 + std::fabs(expected[i])));
            apart = std::max(apart, std::fabs(double{y[i]} - decoded[i]) / (1.0 + std::fabs(double{decoded[i]})));
          }
          INFO("n " << n << " k " << k << " m " << m << " groups of " << group_size << ", " << threads << " threads");
          CHECK(worst < 2e-6);
          CHECK(apart < 2e-6);
          if (threads == 1) one_thread = y;
          CHECK(y == one_thread);  // the same bits however the outputs are split
        }
      }
    }
  }
}
