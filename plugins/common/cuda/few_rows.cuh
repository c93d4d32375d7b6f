#pragma once
// The decode path's projection on the GPU: y = x W^T + bias for a few rows of x (one token per
// sequence), W (N, K) read in its stored type (f32, f16 or bf16), f32 accumulation. It is
// memory-bound: W is streamed once per call, so 16-bit weights halve the bytes moved.
//
// One warp per output feature o: its 32 lanes walk the weight row W[o] in 16-byte loads (4 f32
// or 8 f16/bf16 weights; lane l takes loads l, l + 32, ...), so a warp reads 512 contiguous
// bytes at a time, and multiply each load with the same K positions of every row of x (read
// through the read-only cache; x is small and shared by all warps). Each lane keeps one f32
// sum per row of x; a butterfly of warp shuffles adds the 32 lanes' sums. The order of every
// sum depends on K and the load width only, never on M: a row's result is the same whatever
// rows are computed with it. Rows of x that are not 16-byte aligned, or K not a multiple of
// the load width, take the scalar form of the same loop (lane l takes k = l, l + 32, ...).
//
// Dimensions: M rows (at most kRows per launch), K in features, N out features.

#include <cstdint>

#include "device_math.cuh"
#include "linear_launch.hpp"

namespace mambakit::cuda_common {

/// Warps (output features) per thread block of the few-rows kernel.
inline constexpr int kFewRowsWarps = 8;

/// The 16 bytes at `p` (16-byte aligned) as f32 values.
__device__ __forceinline__ void load_pack(const float* p, float (&out)[4]) {
  const float4 v = __ldg(reinterpret_cast<const float4*>(p));
  out[0] = v.x;
  out[1] = v.y;
  out[2] = v.z;
  out[3] = v.w;
}
__device__ __forceinline__ void load_pack(const __half* p, float (&out)[8]) {
  const uint4 v = __ldg(reinterpret_cast<const uint4*>(p));
  const unsigned words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    __half2_raw raw;
    raw.x = static_cast<unsigned short>(words[j] & 0xffffu);  // lower address: element 2j
    raw.y = static_cast<unsigned short>(words[j] >> 16);
    const float2 f = __half22float2(__half2(raw));
    out[2 * j] = f.x;
    out[2 * j + 1] = f.y;
  }
}
__device__ __forceinline__ void load_pack(const __nv_bfloat16* p, float (&out)[8]) {
  const uint4 v = __ldg(reinterpret_cast<const uint4*>(p));
  const unsigned words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    out[2 * j] = __uint_as_float(words[j] << 16);  // a bf16 is the upper half of an f32
    out[2 * j + 1] = __uint_as_float(words[j] & 0xffff0000u);
  }
}

/// grid ceil(N / kFewRowsWarps), kFewRowsWarps * 32 threads; requires 1 <= a.m <= kRows <= 32.
/// Reads  x (M, K; row stride ldx) f32, W (N, K) contiguous in W's type, bias (N) optional.
/// Writes y (M, N; row stride ldy) f32.
/// `vectorised`: W's rows and x's rows are 16-byte aligned and K is a multiple of 16/sizeof(W).
template <class W, int kRows>
__global__ __launch_bounds__(kFewRowsWarps * 32) void few_rows_kernel(FewRowsArgs a, bool vectorised) {
  const int lane = static_cast<int>(threadIdx.x % 32);
  const std::int64_t o = static_cast<std::int64_t>(blockIdx.x) * kFewRowsWarps + threadIdx.x / 32;
  if (o >= a.n) return;  // the whole warp leaves together: the shuffles below see 32 lanes
  const W* w = static_cast<const W*>(a.weight.data) + o * a.k;
  const int m = static_cast<int>(a.m);
  float sum[kRows];
#pragma unroll
  for (int q = 0; q < kRows; ++q) sum[q] = 0.f;
  if (vectorised) {
    constexpr int kPack = 16 / static_cast<int>(sizeof(W));
    const std::int64_t packs = a.k / kPack;
#pragma unroll 2
    for (std::int64_t p = lane; p < packs; p += 32) {
      float wv[kPack];
      load_pack(w + p * kPack, wv);
#pragma unroll
      for (int q = 0; q < kRows; ++q) {
        if (q >= m) break;
        const float* xq = a.x + q * a.ldx + p * kPack;
#pragma unroll
        for (int j = 0; j < kPack; j += 4) {
          const float4 xv = __ldg(reinterpret_cast<const float4*>(xq + j));
          sum[q] = fmaf(wv[j], xv.x, sum[q]);
          sum[q] = fmaf(wv[j + 1], xv.y, sum[q]);
          sum[q] = fmaf(wv[j + 2], xv.z, sum[q]);
          sum[q] = fmaf(wv[j + 3], xv.w, sum[q]);
        }
      }
    }
  } else {
    for (std::int64_t i = lane; i < a.k; i += 32) {
      const float wi = to_f32(w[i]);
#pragma unroll
      for (int q = 0; q < kRows; ++q) {
        if (q >= m) break;
        sum[q] = fmaf(wi, __ldg(a.x + q * a.ldx + i), sum[q]);
      }
    }
  }
#pragma unroll
  for (int q = 0; q < kRows; ++q) {
#pragma unroll
    for (int offset = 16; offset > 0; offset /= 2) sum[q] += __shfl_xor_sync(0xffffffffu, sum[q], offset);
  }
  const float bias = load_param(a.bias, o, 0.f);
#pragma unroll
  for (int q = 0; q < kRows; ++q) {
    if (q < m && lane == q) a.y[q * a.ldy + o] = sum[q] + bias;
  }
}

}  // namespace mambakit::cuda_common
