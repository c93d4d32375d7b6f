#pragma once
// Dense projections for CPU plugins, on Eigen's GEMM: y = x W^T (+ bias), the layout of
// PyTorch's nn.Linear and of Hugging Face checkpoints (W is (out, in), row-major), and their
// backward products (gradients accumulate, +=, unless a function says otherwise).
//
// Templated on the element type T (float, or double for double-precision runs). The decode
// path's few-rows product, which also takes f16/bf16 weights, is in few_rows.hpp.
//
// Dimensions: M rows (batch x length), K in features, N out features.

#include <Eigen/Core>
#include <cstdint>
#include <type_traits>

#include "mambakit/sdk/util/int8_rows.hpp"
#include "mambakit/sdk/util/typed_params.hpp"

namespace mambakit::sdk::util {

template <class T>
using RowMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using ConstMatrixMap = Eigen::Map<const RowMatrix<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <class T>
using MatrixMap = Eigen::Map<RowMatrix<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <class T>
using RowVector = Eigen::Matrix<T, 1, Eigen::Dynamic>;

/// Uses `n_threads` threads for Eigen's GEMM in this plugin.
inline void set_gemm_threads(int n_threads) { Eigen::setNbThreads(n_threads > 0 ? n_threads : 1); }

/// y (M, N; row stride ldy) = x (M, K; row stride ldx) W^T, W (N, K), + bias (N) when given.
/// `accumulate` adds to y instead of overwriting it.
template <class T>
void linear_forward(const T* x, std::int64_t ldx, const T* weight, const std::type_identity_t<T>* bias, T* y,
                           std::int64_t ldy, std::int64_t m, std::int64_t k, std::int64_t n, bool accumulate = false) {
  ConstMatrixMap<T> x_map(x, m, k, Eigen::OuterStride<>(ldx));
  ConstMatrixMap<T> w_map(weight, n, k, Eigen::OuterStride<>(k));
  MatrixMap<T> y_map(y, m, n, Eigen::OuterStride<>(ldy));
  if (accumulate) {
    y_map.noalias() += x_map * w_map.transpose();
  } else {
    y_map.noalias() = x_map * w_map.transpose();
  }
  if (bias != nullptr) {
    y_map.rowwise() += Eigen::Map<const RowVector<T>>(bias, n);
  }
}

/// linear_forward with W as TypedParams::linear() gives it, on `n_threads` threads: an int8 W
/// (kQ8) through linear_int8_forward (int8_rows.hpp: the rows quantized per group, int32 sums;
/// faster than widening W into the f32 GEMM), any other through the GEMM above.
template <class T>
void linear_forward(int n_threads, const T* x, std::int64_t ldx, const LinearWeight<T>& weight,
                    const std::type_identity_t<T>* bias, T* y, std::int64_t ldy, std::int64_t m, std::int64_t k,
                    std::int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    if (weight.int8 != nullptr) return linear_int8_forward(x, ldx, *weight.int8, bias, y, ldy, m, n_threads);
  }
  linear_forward<T>(x, ldx, weight.values, bias, y, ldy, m, k, n);
}

/// Backward of linear_forward with respect to its input:
/// grad_x (M, K; row stride ldgx) += grad_y (M, N; row stride ldgy) W, W (N, K).
/// `accumulate` false overwrites grad_x instead.
template <class T>
void linear_backward_input(const T* grad_y, std::int64_t ldgy, const T* weight, T* grad_x,
                                  std::int64_t ldgx, std::int64_t m, std::int64_t k, std::int64_t n,
                                  bool accumulate = true) {
  ConstMatrixMap<T> gy_map(grad_y, m, n, Eigen::OuterStride<>(ldgy));
  ConstMatrixMap<T> w_map(weight, n, k, Eigen::OuterStride<>(k));
  MatrixMap<T> gx_map(grad_x, m, k, Eigen::OuterStride<>(ldgx));
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
template <class T>
void linear_backward_params(const T* grad_y, std::int64_t ldgy, const T* x, std::int64_t ldx,
                                   std::type_identity_t<T>* grad_weight,
                            std::type_identity_t<T>* grad_bias, std::int64_t m, std::int64_t k,
                                   std::int64_t n) {
  ConstMatrixMap<T> gy_map(grad_y, m, n, Eigen::OuterStride<>(ldgy));
  if (grad_weight != nullptr) {
    ConstMatrixMap<T> x_map(x, m, k, Eigen::OuterStride<>(ldx));
    MatrixMap<T> gw_map(grad_weight, n, k, Eigen::OuterStride<>(k));
    gw_map.noalias() += gy_map.transpose() * x_map;
  }
  if (grad_bias != nullptr) {
    Eigen::Map<RowVector<T>>(grad_bias, n) += gy_map.colwise().sum();
  }
}

}  // namespace mambakit::sdk::util
