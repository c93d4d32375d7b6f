#pragma once
// The backward of y = x W^T + bias (cublas_linear.hpp's linear_gemm) on the GPU, for the
// in-tree CUDA plugins' training paths; what sdk::util's linear_backward_input and
// linear_backward_params compute on the CPU, with f32 cuBLAS GEMMs (no TF32):
//   grad_x (M, K)  = beta grad_x + grad_y (M, N) W (N, K)
//   grad_W (N, K) += grad_y^T x,   grad_bias (N) += column sums of grad_y
// Everything is enqueued on the context's stream; nothing waits or allocates. Host code only;
// include it from .cpp files of CUDA builds.
//
// Dimensions: M rows, K in features, N out features.

#include <cublas_v2.h>

#include <cstdint>

#include "cublas_linear.hpp"
#include "mambakit/sdk/util/cuda_status.hpp"
#include "linear_launch.hpp"
#include "mambakit/sdk/context.hpp"
#include "mambakit/sdk/status.hpp"

namespace mambakit::cuda_common {

/// Enqueues grad_x (M, K; row stride ldgx) = beta grad_x + grad_y (M, N; row stride ldgy) W,
/// W (N, K) contiguous f32: beta 1 accumulates, 0 overwrites.
inline sdk::Status linear_backward_input_gemm(const char* component, const sdk::Context& context,
                                              const float* grad_y, std::int64_t ldgy, const float* weight,
                                              float* grad_x, std::int64_t ldgx, std::int64_t m, std::int64_t k,
                                              std::int64_t n, float beta) {
  // Row-major grad_x = grad_y W is column-major grad_x^T (K, M) = W^T (K, N: W as stored) times
  // grad_y^T (N, M: grad_y as stored).
  return column_major_sgemm(component, context, CUBLAS_OP_N, CUBLAS_OP_N, k, m, n, weight, k, grad_y, ldgy, beta,
                            grad_x, ldgx);
}

/// Enqueues grad_weight (N, K) += grad_y (M, N; row stride ldgy)^T x (M, K; row stride ldx)
/// and grad_bias (N) += the column sums of grad_y, each skipped when null (frozen), all f32.
inline sdk::Status linear_backward_params_gemm(const char* component, const sdk::Context& context,
                                               const float* grad_y, std::int64_t ldgy, const float* x,
                                               std::int64_t ldx, float* grad_weight, float* grad_bias, std::int64_t m,
                                               std::int64_t k, std::int64_t n) {
  if (grad_weight != nullptr) {
    // Row-major grad_W += grad_y^T x is column-major grad_W^T (K, N) += x^T (K, M: x as stored)
    // times grad_y (M, N: grad_y as stored is the column-major (N, M) grad_y^T, transposed).
    MAMBAKIT_RETURN_IF_ERROR(column_major_sgemm(component, context, CUBLAS_OP_N, CUBLAS_OP_T, k, n, m, x, ldx, grad_y,
                                                ldgy, 1.f, grad_weight, k));
  }
  MAMBAKIT_CUDA_CHECK(component, launch_add_column_sums(grad_y, ldgy, m, n, grad_bias, sdk::cuda::stream_of(context)));
  return sdk::Status::success();
}

}  // namespace mambakit::cuda_common
