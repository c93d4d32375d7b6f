#pragma once
// Device helpers shared by scan/cuda's kernels: element access through DeviceViews with
// conversion to and from f32, the scalar functions of the scan, the (a, b) pair combine of the
// linear recurrence, the running prefix that carries a state from chunk to chunk, and a
// block-wide reverse scan for the adjoint.
//
// The recurrence h_t = a_t h_{t-1} + b_t is a scan over pairs (a_t, b_t) with the associative
// combine (a1, b1) o (a2, b2) = (a1 a2, a2 b1 + b2) ("first (a1, b1), then (a2, b2)"). A state
// h is the pair (1, h); combining it with the pairs of steps t0..t gives (prod a, h_t).
//
// Dimensions: B batch, L length, E d_inner, N d_state.

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "cuda_scan_launch.hpp"

namespace mambakit::scan_cuda {

/// Channels per thread block: a block scans kChannels neighbouring channels of one batch row,
/// which share the loads of B and C and read u, delta, z and y in runs of kChannels elements.
inline constexpr int kChannels = 4;
/// Time steps per thread in a chunk (a chunk is threads * kItems steps).
inline constexpr int kItems = 4;
/// Threads per block for long and for short sequences.
inline constexpr int kLongThreads = 128;
inline constexpr int kShortThreads = 32;
/// Sequences up to this length use kShortThreads (one chunk of 128 steps).
inline constexpr std::int64_t kShortLength = kShortThreads * kItems;

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

template <class T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __half from_float<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

/// Element (i, j, k) of a rank-3 view.
template <class T>
__device__ __forceinline__ T* at(const DeviceView& view, std::int64_t i, std::int64_t j, std::int64_t k) {
  return static_cast<T*>(view.data) + i * view.stride0 + j * view.stride1 + k;
}
/// Element (i, j) of a rank-2 view.
template <class T>
__device__ __forceinline__ T* at(const DeviceView& view, std::int64_t i, std::int64_t j) {
  return static_cast<T*>(view.data) + i * view.stride0 + j;
}

template <class T>
__device__ __forceinline__ float load(const DeviceView& view, std::int64_t i, std::int64_t j, std::int64_t k) {
  return to_float(*at<const T>(view, i, j, k));
}
template <class T>
__device__ __forceinline__ float load(const DeviceView& view, std::int64_t i, std::int64_t j) {
  return to_float(*at<const T>(view, i, j));
}
/// Element i of a rank-1 f32 view, or `fallback` when the view is absent.
__device__ __forceinline__ float load_or(const DeviceView& view, std::int64_t i, float fallback) {
  return view.data != nullptr ? static_cast<const float*>(view.data)[i] : fallback;
}
/// view(i, j, k) += value, in the view's dtype.
template <class T>
__device__ __forceinline__ void add_to(const DeviceView& view, std::int64_t i, std::int64_t j, std::int64_t k,
                                       float value) {
  T* p = at<T>(view, i, j, k);
  *p = from_float<T>(to_float(*p) + value);
}

/// softplus(v) = log(1 + exp(v)), and v itself above 20 (as every backend does).
__device__ __forceinline__ float softplus(float v) { return v <= 20.f ? log1pf(expf(v)) : v; }
__device__ __forceinline__ float sigmoid(float v) { return 1.f / (1.f + expf(-v)); }

/// The step size dt from delta + delta_bias (`raw`).
__device__ __forceinline__ float step_size(float raw, bool delta_softplus) {
  return delta_softplus ? softplus(raw) : raw;
}

/// D and delta_bias of a block's channels e0 + g (g < kChannels); 0 for absent ones and for g
/// at or past `channels`.
__device__ __forceinline__ void load_channel_params(const ForwardParams& p, std::int64_t e0, int channels,
                                                    float (&D_value)[kChannels], float (&bias)[kChannels]) {
  for (int g = 0; g < kChannels; ++g) {
    D_value[g] = g < channels ? load_or(p.D, e0 + g, 0.f) : 0.f;
    bias[g] = g < channels ? load_or(p.delta_bias, e0 + g, 0.f) : 0.f;
  }
}

/// u and the step size dt of a block's channels e0 + g at steps t0 + i (i < kItems) of row b.
/// Steps past L and channels at or past `channels` get u = dt = 0: the pair (1, 0), which leaves
/// the state alone and carries no gradient.
template <class T>
__device__ __forceinline__ void load_chunk_inputs(const ForwardParams& p, std::int64_t b, std::int64_t t0,
                                                  std::int64_t e0, int channels, const float (&bias)[kChannels],
                                                  float (&u)[kChannels][kItems], float (&dt)[kChannels][kItems]) {
#pragma unroll
  for (int g = 0; g < kChannels; ++g) {
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
      const std::int64_t t = t0 + i;
      const bool valid = t < p.shape.length && g < channels;
      u[g][i] = valid ? load<T>(p.u, b, t, e0 + g) : 0.f;
      dt[g][i] = valid ? step_size(load<T>(p.delta, b, t, e0 + g) + bias[g], p.delta_softplus) : 0.f;
    }
  }
}

/// (a1, b1) o (a2, b2) = (a1 a2, a2 b1 + b2): `first` applied, then `second`.
struct PairCombine {
  __device__ __forceinline__ float2 operator()(const float2& first, const float2& second) const {
    return make_float2(first.x * second.x, second.x * first.y + second.y);
  }
};

__device__ __forceinline__ float2 identity_pair() { return make_float2(1.f, 0.f); }

/// cub::BlockScan prefix callback that carries the state across the chunks of a sequence:
/// returns the state before the chunk and keeps the state after it (valid in thread 0).
struct RunningPrefix {
  float2 running;
  __device__ explicit RunningPrefix(float2 start) : running(start) {}
  __device__ float2 operator()(float2 chunk_aggregate) {
    const float2 before = running;
    running = PairCombine{}(running, chunk_aggregate);
    return before;
  }
};

/// Sum of `value` over the 32 lanes of a warp (every lane gets it). All lanes must call it.
__device__ __forceinline__ float warp_sum(float value) {
  for (int offset = 16; offset > 0; offset /= 2) value += __shfl_xor_sync(0xffffffffu, value, offset);
  return value;
}

__device__ __forceinline__ float2 shuffle_down(float2 v, int offset) {
  return make_float2(__shfl_down_sync(0xffffffffu, v.x, offset), __shfl_down_sync(0xffffffffu, v.y, offset));
}

/// Block-wide exclusive scan in reverse time order over pairs held kItems per thread (thread k
/// holds the steps k * kItems .. k * kItems + kItems - 1 in time order). For the adjoint
/// recurrence p_t = a_t p_{t+1} + b_t run backwards from p at the block's end (`carry`, a
/// state (1, p)): after[i] receives the state p_{t+1} that reaches step t from later steps, and
/// `carry` becomes p at the block's start, the same in every thread. All threads must call it;
/// it synchronises the block and may reuse `storage` on return.
template <int kThreads>
struct BlockReverseScan {
  static constexpr int kWarps = kThreads / 32;
  static_assert(kThreads % 32 == 0, "whole warps only");
  struct TempStorage {
    float2 warp_total[kWarps];
  };

  __device__ static void exclusive(const float2 (&items)[kItems], float2 (&after)[kItems], float2& carry,
                                   TempStorage& storage) {
    const PairCombine combine;
    const int lane = static_cast<int>(threadIdx.x) % 32;
    const int warp = static_cast<int>(threadIdx.x) / 32;
    // This thread's steps, last first.
    float2 thread_total = identity_pair();
    for (int i = kItems - 1; i >= 0; --i) thread_total = combine(thread_total, items[i]);
    // Lanes lane..31 of the warp, later lanes first (Hillis-Steele over reversed lanes).
    float2 inclusive = thread_total;
    for (int offset = 1; offset < 32; offset *= 2) {
      const float2 later = shuffle_down(inclusive, offset);
      if (lane + offset < 32) inclusive = combine(later, inclusive);
    }
    float2 lane_after = shuffle_down(inclusive, 1);
    if (lane == 31) lane_after = identity_pair();
    if (lane == 0) storage.warp_total[warp] = inclusive;
    __syncthreads();
    float2 running = carry;
    for (int w = kWarps - 1; w > warp; --w) running = combine(running, storage.warp_total[w]);
    float2 block_start = running;
    for (int w = warp; w >= 0; --w) block_start = combine(block_start, storage.warp_total[w]);
    running = combine(running, lane_after);
    for (int i = kItems - 1; i >= 0; --i) {
      after[i] = running;
      running = combine(running, items[i]);
    }
    carry = block_start;
    __syncthreads();
  }
};

}  // namespace mambakit::scan_cuda
