#pragma once
// The decode path's projection as a checked call, the few-rows counterpart of
// cublas_linear.hpp's linear_gemm (same argument order): no cuBLAS, no allocation, so it may run
// while the stream is being captured into a CUDA graph. Host code of CUDA builds only.
//
// Dimensions: M rows, K in features, N out features.

#include <cstdint>

#include "mambakit/sdk/util/cuda_status.hpp"
#include "linear_launch.hpp"
#include "mambakit/sdk/context.hpp"
#include "mambakit/sdk/status.hpp"

namespace mambakit::cuda_common {

/// Enqueues y (M, N; row stride ldy) = x (M, K; row stride ldx) W^T (+ bias (N) when present)
/// on the context's stream with the few-rows kernel (launch_linear_few_rows); a failed launch is
/// a kDeviceError Status naming `component`.
inline sdk::Status linear_few_rows(const char* component, const sdk::Context& context, const float* x,
                                   std::int64_t ldx, DeviceParam weight, DeviceParam bias, float* y, std::int64_t ldy,
                                   std::int64_t m, std::int64_t k, std::int64_t n) {
  MAMBAKIT_CUDA_CHECK(component,
                      launch_linear_few_rows(FewRowsArgs{x, ldx, weight, bias, y, ldy, m, k, n}, sdk::cuda::stream_of(context)));
  return sdk::Status::success();
}

}  // namespace mambakit::cuda_common
