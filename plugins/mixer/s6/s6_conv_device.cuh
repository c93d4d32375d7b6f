#pragma once
// Device helpers shared by mixer/s6's conv kernels, forward (s6_cuda_kernels.cu) and backward
// (s6_cuda_backward_kernels.cu): the conv input of a time step, taken from the initial state
// before t = 0, and the pre-activation (causal_conv.hpp's arithmetic), from the forward's
// ConvArgs.
//
// Dimensions: B batch, L length, E d_inner, K d_conv.

#include <cstdint>

#include "device_math.cuh"
#include "s6_cuda_launch.hpp"

namespace mambakit::mixer_s6 {

/// The conv input of batch row b, time `source` (>= -K) and channel e: input (B, L, E; row
/// stride) from t = 0 on, initial_state (B, E, K) slot source + K before, or 0 without one.
__device__ __forceinline__ float conv_input(const ConvArgs& a, std::int64_t b, std::int64_t source, std::int64_t e) {
  if (source >= 0) return a.input[(b * a.length + source) * a.input_row_stride + e];
  if (a.initial_state == nullptr) return 0.f;
  return a.initial_state[(b * a.d_inner + e) * a.d_conv + source + a.d_conv];
}

/// bias[e] + sum_k weight[e, k] input[b, t - K + 1 + k, e]: the conv's output (b, t, e) before
/// the SiLU.
__device__ __forceinline__ float conv_pre_activation(const ConvArgs& a, std::int64_t b, std::int64_t t, std::int64_t e) {
  const std::int64_t K = a.d_conv;
  float sum = cuda_common::load_param(a.bias, e, 0.f);
  for (std::int64_t k = 0; k < K; ++k) {
    sum += cuda_common::load_param(a.weight, e * K + k, 0.f) * conv_input(a, b, t - K + 1 + k, e);
  }
  return sum;
}

}  // namespace mambakit::mixer_s6
