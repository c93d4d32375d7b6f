#pragma once
// Launchers of the dense-projection kernels (and the bias gradient) shared by the in-tree CUDA
// plugins (definitions in linear_kernels.cu, compiled into each plugin that uses them; the
// few-rows kernel itself is in few_rows.cuh). Layout of PyTorch's nn.Linear: y = x W^T + bias, W (N, K) row-major.
// Launchers only enqueue work on `stream` and return the launch error; they allocate nothing
// and never synchronise, so they may run while the stream is being captured into a CUDA graph.
//
// Dimensions: M rows, K in features, N out features.

#include <cuda_runtime_api.h>

#include <cstdint>

#include "mambakit/sdk/dtype.hpp"
#include "mambakit/sdk/tensor_view.hpp"

namespace mambakit::cuda_common {

/// A device array of f32, f16 or bf16 values (a parameter as the host holds it);
/// `data == nullptr` marks an absent optional one.
struct DeviceParam {
  const void* data = nullptr;
  sdk::DType dtype = sdk::DType::kF32;
};

/// The parameter behind `view` (absent stays absent).
inline DeviceParam device_param(const sdk::TensorView& view) noexcept { return {view.data, view.dtype}; }

/// Largest M one few-rows kernel launch handles; launch_linear_few_rows splits larger M into
/// groups of this many rows.
inline constexpr std::int64_t kFewRowsGroup = 16;

/// The arguments of y = x W^T + bias for a few rows of x.
struct FewRowsArgs {
  const float* x = nullptr;  ///< (M, K), row stride ldx, f32
  std::int64_t ldx = 0;
  DeviceParam weight;        ///< (N, K), contiguous (row stride K), f32, f16 or bf16
  DeviceParam bias;          ///< (N), optional
  float* y = nullptr;        ///< (M, N), row stride ldy, f32, overwritten
  std::int64_t ldy = 0;
  std::int64_t m = 0, k = 0, n = 0;
};

/// Enqueues y = x W^T + bias reading W in its stored type with f32 accumulation: one warp per
/// output feature streams its weight row once for up to kFewRowsGroup rows of x (larger M is
/// split into groups). Each y[m][n] is summed in an order that depends only on K, so a row's
/// result does not depend on the other rows computed with it. M, K, N >= 1.
cudaError_t launch_linear_few_rows(const FewRowsArgs& args, cudaStream_t stream) noexcept;

/// Enqueues out[i] = f32(in[i]) for i < count; `in` is f16 or bf16 (an f32 `in` is copied).
cudaError_t launch_widen_to_f32(DeviceParam in, float* out, std::int64_t count, cudaStream_t stream) noexcept;

/// Enqueues y[m][n] += bias[n] for y (M, N) with row stride ldy.
cudaError_t launch_add_bias(float* y, std::int64_t ldy, DeviceParam bias, std::int64_t m, std::int64_t n,
                            cudaStream_t stream) noexcept;

/// Enqueues sums[n] += sum over m of y[m][n] for y (M, N) with row stride ldy (a bias gradient),
/// f32, summed in an order that depends only on M (deterministic).
cudaError_t launch_add_column_sums(const float* y, std::int64_t ldy, std::int64_t m, std::int64_t n, float* sums,
                                   cudaStream_t stream) noexcept;

}  // namespace mambakit::cuda_common
