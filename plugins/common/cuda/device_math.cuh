#pragma once
// Device helpers shared by the in-tree CUDA plugins' kernels: f16/bf16 to f32, reading a
// parameter of any stored type, SiLU, and the size of a grid-stride launch.

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "linear_launch.hpp"

namespace mambakit::cuda_common {

__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_f32(__nv_bfloat16 v) { return __bfloat162float(v); }

/// Element i of `param` as f32, or `fallback` when the parameter is absent.
__device__ __forceinline__ float load_param(const DeviceParam& param, std::int64_t i, float fallback) {
  if (param.data == nullptr) return fallback;
  switch (param.dtype) {
    case sdk::DType::kF16: return __half2float(static_cast<const __half*>(param.data)[i]);
    case sdk::DType::kBF16: return __bfloat162float(static_cast<const __nv_bfloat16*>(param.data)[i]);
    default: return static_cast<const float*>(param.data)[i];
  }
}

/// silu(v) = v sigmoid(v), with full-precision expf as the CPU code computes it.
__device__ __forceinline__ float silu(float v) { return v / (1.f + expf(-v)); }

/// Threads per block of the element-wise kernels.
inline constexpr int kElementThreads = 256;

/// Blocks of kElementThreads for a grid-stride loop over `count` elements (at least 1; capped,
/// the loop covers the rest).
inline unsigned grid_stride_blocks(std::int64_t count) {
  constexpr std::int64_t kMaxBlocks = std::int64_t{1} << 20;
  const std::int64_t blocks = (count + kElementThreads - 1) / kElementThreads;
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > kMaxBlocks ? kMaxBlocks : blocks));
}

/// The first index of this thread in a grid-stride loop, and the stride.
__device__ __forceinline__ std::int64_t grid_stride_begin() {
  return static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ std::int64_t grid_stride_step() {
  return static_cast<std::int64_t>(gridDim.x) * blockDim.x;
}

}  // namespace mambakit::cuda_common
