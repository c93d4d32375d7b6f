#pragma once
// Dense projections for CPU plugins, on Eigen's GEMM: y = x W^T (+ bias), the layout of
// PyTorch's nn.Linear and of Hugging Face checkpoints (W is (out, in), row-major).
//
// Dimensions: M rows (batch x length), K in features, N out features.

#include <Eigen/Core>
#include <cstdint>

namespace mambakit::plugin_common {

using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstMatrixMap = Eigen::Map<const RowMatrix, Eigen::Unaligned, Eigen::OuterStride<>>;
using MatrixMap = Eigen::Map<RowMatrix, Eigen::Unaligned, Eigen::OuterStride<>>;

/// Uses `n_threads` threads for Eigen's GEMM in this plugin.
inline void set_gemm_threads(int n_threads) { Eigen::setNbThreads(n_threads > 0 ? n_threads : 1); }

/// y (M, N; row stride ldy) = x (M, K; row stride ldx) W^T, W (N, K), + bias (N) when given.
/// `accumulate` adds to y instead of overwriting it.
inline void linear_forward(const float* x, std::int64_t ldx, const float* weight, const float* bias, float* y,
                           std::int64_t ldy, std::int64_t m, std::int64_t k, std::int64_t n, bool accumulate = false) {
  ConstMatrixMap x_map(x, m, k, Eigen::OuterStride<>(ldx));
  ConstMatrixMap w_map(weight, n, k, Eigen::OuterStride<>(k));
  MatrixMap y_map(y, m, n, Eigen::OuterStride<>(ldy));
  if (accumulate) {
    y_map.noalias() += x_map * w_map.transpose();
  } else {
    y_map.noalias() = x_map * w_map.transpose();
  }
  if (bias != nullptr) {
    y_map.rowwise() += Eigen::Map<const Eigen::RowVectorXf>(bias, n);
  }
}

/// The same product for few rows (decode): y (M, N; row stride ldy) = x (M, K; row stride
/// ldx) W^T + bias. Streams W once, in parallel over output features, and sums every y[m][n]
/// in one fixed order, so a row's result does not depend on how many rows are computed with
/// it (batched generation equals generating each row alone).
inline void linear_few_rows(const float* x, std::int64_t ldx, const float* weight, const float* bias, float* y,
                            std::int64_t ldy, std::int64_t m, std::int64_t k, std::int64_t n, int n_threads) {
#pragma omp parallel for num_threads(n_threads) schedule(static)
  for (std::int64_t j = 0; j < n; ++j) {
    const float* w = weight + j * k;
    for (std::int64_t r = 0; r < m; ++r) {
      const float* row = x + r * ldx;
      float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
      for (std::int64_t i = 0; i < k; ++i) sum += w[i] * row[i];
      y[r * ldy + j] = sum + (bias != nullptr ? bias[j] : 0.0f);
    }
  }
}

}  // namespace mambakit::plugin_common
