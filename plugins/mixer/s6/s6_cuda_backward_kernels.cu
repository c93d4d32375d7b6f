// mixer/s6's own CUDA kernels for backward (the projections' gradients are cuBLAS GEMMs, the
// scan's come from the scan backend): the causal depthwise conv + SiLU's backward and the
// chain rule through A = -exp(A_log). The arithmetic is that of causal_conv.cpp's
// causal_conv_silu_backward, reorganised for the GPU without atomics:
//   1. g = d out * silu'(pre), silu'(a) = s (1 + a (1 - s)), s = sigmoid(a)   one thread per (b, t, e)
//   2. grad weight[e, k] += sum_(b, t) g[b, t, e] in[b, t - K + 1 + k, e]      one block per (32 channels, k);
//      grad bias[e] += sum_(b, t) g[b, t, e]                          plugins/common's launch_add_column_sums
//   3. grad in[b, s, e] += sum_k g[b, s + K - 1 - k, e] weight[e, k] (+ the final state's
//      gradient when s is one of the last K inputs); inputs before s = 0 are initial-state
//      slots s + K                                                             one thread per (b, s, e)
// Every reduction runs in a fixed order: results are deterministic.
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

/// Channels per block of the weight and bias reduction, and row slices summed in parallel.
constexpr int kReduceChannels = 32, kReduceSlices = 8;

/// grid-stride over B * L * E, one thread per (b, t, e), e fastest.
/// Reads  input (B, L, E; row stride), weight (E, K), bias (E), initial_state (B, E, K).
/// Updates grad_out (B, L, E) in place: d/d out becomes d/d pre-activation.
__global__ void conv_silu_grad_kernel(ConvBackwardArgs a) {
  const ConvArgs& f = a.forward;
  const std::int64_t E = f.d_inner, L = f.length;
  for (std::int64_t i = grid_stride_begin(); i < f.batch * L * E; i += grid_stride_step()) {
    const std::int64_t e = i % E, row = i / E, t = row % L, b = row / L;
    const float pre = conv_pre_activation(f, b, t, e);
    const float s = 1.f / (1.f + expf(-pre));
    a.grad_out[i] = a.grad_out[i] * s * (1.f + pre * (1.f - s));
  }
}

/// grid (ceil(E / kReduceChannels), K), block (kReduceChannels, kReduceSlices): block (x, k)
/// reduces, for its channels, tap k's weight gradient over all B * L rows. Thread (c, s) sums
/// rows s, s + kReduceSlices, ...; the block then adds its kReduceSlices partial sums in order.
/// (The bias gradient is the column sum of grad_out: launch_add_column_sums.)
/// Reads  grad_out (B, L, E) (the pre-activation's gradient), input (B, L, E; row stride),
///        initial_state (B, E, K).
/// Updates grad_weight (E, K) +=.
__global__ void conv_grad_weight_kernel(ConvBackwardArgs a) {
  __shared__ float partial[kReduceSlices][kReduceChannels];
  const ConvArgs& f = a.forward;
  const std::int64_t E = f.d_inner, L = f.length, K = f.d_conv, rows = f.batch * f.length;
  const std::int64_t e = static_cast<std::int64_t>(blockIdx.x) * kReduceChannels + threadIdx.x;
  const std::int64_t k = blockIdx.y;
  float sum = 0.f;
  if (e < E) {
    for (std::int64_t row = threadIdx.y; row < rows; row += kReduceSlices) {
      sum += a.grad_out[row * E + e] * conv_input(f, row / L, row % L - K + 1 + k, e);
    }
  }
  partial[threadIdx.y][threadIdx.x] = sum;
  __syncthreads();
  if (threadIdx.y != 0 || e >= E) return;
  float total = 0.f;
  for (int slice = 0; slice < kReduceSlices; ++slice) total += partial[slice][threadIdx.x];
  a.grad_weight[e * K + k] += total;
}

/// grid-stride over B * (K + L) * E, one thread per (b, source, e) for source in [-K, L), e
/// fastest: the gradient of conv input `source`, gathered from the outputs t = source + K - 1 - k
/// that read it through tap k, plus that of the final-state slot source - (L - K) it was copied
/// to (when source >= L - K).
/// Reads  grad_out (B, L, E) (the pre-activation's gradient), weight (E, K),
///        grad_final_state (B, E, K).
/// Updates grad_input (B, L, E; row stride) += for source >= 0, grad_initial_state (B, E, K)
///        slot source + K += before (only with an initial state).
__global__ void conv_grad_input_kernel(ConvBackwardArgs a) {
  const ConvArgs& f = a.forward;
  const std::int64_t E = f.d_inner, L = f.length, K = f.d_conv, span = K + L;
  const bool with_state = f.initial_state != nullptr && a.grad_initial_state != nullptr;
  for (std::int64_t i = grid_stride_begin(); i < f.batch * span * E; i += grid_stride_step()) {
    const std::int64_t e = i % E, rest = i / E, source = rest % span - K, b = rest / span;
    if (source < 0 && !with_state) continue;
    float sum = 0.f;
    for (std::int64_t k = 0; k < K; ++k) {
      const std::int64_t t = source + K - 1 - k;
      if (t >= 0 && t < L) sum += a.grad_out[(b * L + t) * E + e] * load_param(f.weight, e * K + k, 0.f);
    }
    if (a.grad_final_state != nullptr && source >= L - K) {
      sum += a.grad_final_state[(b * E + e) * K + source - (L - K)];
    }
    if (source >= 0) {
      a.grad_input[(b * L + source) * a.grad_input_row_stride + e] += sum;
    } else {
      a.grad_initial_state[(b * E + e) * K + source + K] += sum;
    }
  }
}

/// grid-stride over E * N.  Reads grad_a, a (E, N).  Updates grad_a_log (E, N) +=.
__global__ void a_log_grad_kernel(const float* grad_a, const float* a, float* grad_a_log, std::int64_t count) {
  for (std::int64_t i = grid_stride_begin(); i < count; i += grid_stride_step()) grad_a_log[i] += grad_a[i] * a[i];
}

}  // namespace

cudaError_t launch_causal_conv_silu_backward(const ConvBackwardArgs& args, cudaStream_t stream) noexcept {
  const ConvArgs& f = args.forward;
  const std::int64_t E = f.d_inner;
  conv_silu_grad_kernel<<<grid_stride_blocks(f.batch * f.length * E), kElementThreads, 0, stream>>>(args);
  cudaError_t error = cudaGetLastError();
  if (error != cudaSuccess) return error;
  if (args.grad_weight != nullptr) {
    const dim3 grid(static_cast<unsigned>((E + kReduceChannels - 1) / kReduceChannels), static_cast<unsigned>(f.d_conv));
    conv_grad_weight_kernel<<<grid, dim3(kReduceChannels, kReduceSlices), 0, stream>>>(args);
    error = cudaGetLastError();
    if (error != cudaSuccess) return error;
  }
  if (args.grad_bias != nullptr) {
    error = cuda_common::launch_add_column_sums(args.grad_out, E, f.batch * f.length, E, args.grad_bias, stream);
    if (error != cudaSuccess) return error;
  }
  const std::int64_t inputs = f.batch * (f.d_conv + f.length) * E;
  conv_grad_input_kernel<<<grid_stride_blocks(inputs), kElementThreads, 0, stream>>>(args);
  return cudaGetLastError();
}

cudaError_t launch_add_a_log_grad(const float* grad_a, const float* a, float* grad_a_log, std::int64_t count,
                                  cudaStream_t stream) noexcept {
  a_log_grad_kernel<<<grid_stride_blocks(count), kElementThreads, 0, stream>>>(grad_a, a, grad_a_log, count);
  return cudaGetLastError();
}

}  // namespace mambakit::mixer_s6
