#pragma once
// Dense projections for CPU plugins, on Eigen's GEMM: y = x W^T (+ bias), the layout of
// PyTorch's nn.Linear and of Hugging Face checkpoints (W is (out, in), row-major), and their
// backward products (gradients accumulate, +=, unless a function says otherwise).
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

/// Backward of linear_forward with respect to its input:
/// grad_x (M, K; row stride ldgx) += grad_y (M, N; row stride ldgy) W, W (N, K).
/// `accumulate` false overwrites grad_x instead.
inline void linear_backward_input(const float* grad_y, std::int64_t ldgy, const float* weight, float* grad_x,
                                  std::int64_t ldgx, std::int64_t m, std::int64_t k, std::int64_t n,
                                  bool accumulate = true) {
  ConstMatrixMap gy_map(grad_y, m, n, Eigen::OuterStride<>(ldgy));
  ConstMatrixMap w_map(weight, n, k, Eigen::OuterStride<>(k));
  MatrixMap gx_map(grad_x, m, k, Eigen::OuterStride<>(ldgx));
  if (accumulate) {
    gx_map.noalias() += gy_map * w_map;
  } else {
    gx_map.noalias() = gy_map * w_map;
  }
}

/// Backward of linear_forward with respect to its parameters, accumulating (+=):
/// grad_weight (N, K) += grad_y^T (N, M) x (M, K) and grad_bias (N) += the column sums of
/// grad_y (M, N). grad_y and x have row strides ldgy and ldx; a null grad_weight or grad_bias
/// is skipped (a frozen parameter).
inline void linear_backward_params(const float* grad_y, std::int64_t ldgy, const float* x, std::int64_t ldx,
                                   float* grad_weight, float* grad_bias, std::int64_t m, std::int64_t k,
                                   std::int64_t n) {
  ConstMatrixMap gy_map(grad_y, m, n, Eigen::OuterStride<>(ldgy));
  if (grad_weight != nullptr) {
    ConstMatrixMap x_map(x, m, k, Eigen::OuterStride<>(ldx));
    MatrixMap gw_map(grad_weight, n, k, Eigen::OuterStride<>(k));
    gw_map.noalias() += gy_map.transpose() * x_map;
  }
  if (grad_bias != nullptr) {
    Eigen::Map<Eigen::RowVectorXf>(grad_bias, n) += gy_map.colwise().sum();
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
