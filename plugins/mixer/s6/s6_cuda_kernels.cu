// mixer/s6's own CUDA kernels (the projections are in plugins/common/cuda, the scan in the
// scan backend) for forward and step: the causal depthwise conv + SiLU over a sequence and its
// final state, its one-token step, and the scan's per-channel inputs (A = -exp(A_log), D and
// dt bias in f32). The arithmetic is that of causal_conv.cpp and s6_views.hpp, element by
// element: one thread per output element, in grid-stride loops of kElementThreads threads.
//
// Dimensions: B batch, L length, E d_inner, N d_state, K d_conv.

#include <cstdint>

#include "device_math.cuh"
#include "s6_conv_device.cuh"
#include "s6_cuda_launch.hpp"

namespace mambakit::mixer_s6 {

namespace {

using cuda_common::grid_stride_begin;
using cuda_common::grid_stride_blocks;
using cuda_common::grid_stride_step;
using cuda_common::kElementThreads;
using cuda_common::load_param;
using cuda_common::silu;

/// grid-stride over B * L * E, one thread per output (b, t, e), e fastest.
/// Reads  input (B, L, E; row stride), weight (E, K), bias (E), initial_state (B, E, K).
/// Writes out (B, L, E).
__global__ void conv_silu_kernel(ConvArgs a) {
  const std::int64_t E = a.d_inner, L = a.length;
  const std::int64_t total = a.batch * L * E;
  for (std::int64_t i = grid_stride_begin(); i < total; i += grid_stride_step()) {
    const std::int64_t e = i % E, row = i / E, t = row % L, b = row / L;
    a.out[i] = silu(conv_pre_activation(a, b, t, e));
  }
}

/// grid-stride over B * E, one thread per (b, e) writing its K slots in order.
/// Reads  input (B, L, E; row stride), initial_state (B, E, K).  Writes final_state (B, E, K).
/// Slot s reads initial-state slot s + L > s, which this thread has not written yet: in-place
/// (final_state == initial_state) is safe.
__global__ void conv_final_state_kernel(ConvArgs a) {
  const std::int64_t E = a.d_inner, L = a.length, K = a.d_conv;
  for (std::int64_t i = grid_stride_begin(); i < a.batch * E; i += grid_stride_step()) {
    const std::int64_t b = i / E, e = i % E;
    for (std::int64_t slot = 0; slot < K; ++slot) {
      a.final_state[(b * E + e) * K + slot] = conv_input(a, b, L - K + slot, e);
    }
  }
}

/// grid-stride over B * E, one thread per (b, e).
/// Reads  input (B, E; row stride), weight (E, K), bias (E).
/// Updates state (B, E, K) in place; writes out (B, E).
__global__ void conv_silu_step_kernel(ConvStepArgs a) {
  const std::int64_t E = a.d_inner, K = a.d_conv;
  for (std::int64_t i = grid_stride_begin(); i < a.batch * E; i += grid_stride_step()) {
    const std::int64_t b = i / E, e = i % E;
    float* window = a.state + (b * E + e) * K;
    for (std::int64_t k = 0; k + 1 < K; ++k) window[k] = window[k + 1];
    window[K - 1] = a.input[b * a.input_row_stride + e];
    float sum = load_param(a.bias, e, 0.f);
    for (std::int64_t k = 0; k < K; ++k) sum += load_param(a.weight, e * K + k, 0.f) * window[k];
    a.out[b * E + e] = silu(sum);
  }
}

/// grid-stride over E * N.
/// Reads  a_log (E, N), d (E), dt_bias (E).  Writes a (E, N), d_f32 and dt_bias_f32 (E) when set.
__global__ void scan_params_kernel(ScanParamArgs a) {
  const std::int64_t E = a.d_inner;
  for (std::int64_t i = grid_stride_begin(); i < E * a.d_state; i += grid_stride_step()) {
    a.a[i] = -expf(load_param(a.a_log, i, 0.f));
    if (i < E && a.d_f32 != nullptr) a.d_f32[i] = load_param(a.d, i, 0.f);
    if (i < E && a.dt_bias_f32 != nullptr) a.dt_bias_f32[i] = load_param(a.dt_bias, i, 0.f);
  }
}

}  // namespace

cudaError_t launch_causal_conv_silu(const ConvArgs& args, cudaStream_t stream) noexcept {
  const std::int64_t outputs = args.batch * args.length * args.d_inner;
  conv_silu_kernel<<<grid_stride_blocks(outputs), kElementThreads, 0, stream>>>(args);
  cudaError_t error = cudaGetLastError();
  if (error != cudaSuccess || args.final_state == nullptr) return error;
  conv_final_state_kernel<<<grid_stride_blocks(args.batch * args.d_inner), kElementThreads, 0, stream>>>(args);
  return cudaGetLastError();
}

cudaError_t launch_causal_conv_silu_step(const ConvStepArgs& args, cudaStream_t stream) noexcept {
  conv_silu_step_kernel<<<grid_stride_blocks(args.batch * args.d_inner), kElementThreads, 0, stream>>>(args);
  return cudaGetLastError();
}

cudaError_t launch_scan_params(const ScanParamArgs& args, cudaStream_t stream) noexcept {
  scan_params_kernel<<<grid_stride_blocks(args.d_inner * args.d_state), kElementThreads, 0, stream>>>(args);
  return cudaGetLastError();
}

}  // namespace mambakit::mixer_s6
