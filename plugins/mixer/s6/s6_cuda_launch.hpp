#pragma once
// The interface between mixer/s6's CUDA host logic (s6_cuda_forward.cpp, s6_cuda_step.cpp,
// s6_cuda_backward.cpp) and its kernels (s6_cuda_kernels.cu, s6_cuda_backward_kernels.cu):
// plain argument structs of device pointers and one launcher per operation. Launchers only
// enqueue work on `stream` and return the launch error.
//
// Dimensions: B batch, L length, E d_inner, N d_state, K d_conv.

#include <cuda_runtime_api.h>

#include <cstdint>

#include "linear_launch.hpp"

namespace mambakit::mixer_s6 {

using cuda_common::DeviceParam;

/// The causal depthwise conv over a whole sequence, + bias, then SiLU (causal_conv.hpp's
/// causal_conv_silu): out[b, t, e] = silu(bias[e] + sum_k weight[e, k] in[b, t - K + 1 + k, e]),
/// inputs before t = 0 taken from initial_state (slot t + K) or zero.
struct ConvArgs {
  const float* input = nullptr;         ///< (B, L, E), row stride input_row_stride between (b, t) rows
  std::int64_t input_row_stride = 0;
  DeviceParam weight;                   ///< (E, K)
  DeviceParam bias;                     ///< (E), optional
  const float* initial_state = nullptr; ///< (B, E, K), or null for zeros
  float* final_state = nullptr;         ///< (B, E, K), or null: the last K inputs are written here
  float* out = nullptr;                 ///< (B, L, E), contiguous
  std::int64_t batch = 0, length = 0, d_inner = 0, d_conv = 0;
};

/// Enqueues the conv (and, when final_state is set, the final conv state, written after the
/// outputs have been computed, so final_state may be initial_state itself).
cudaError_t launch_causal_conv_silu(const ConvArgs& args, cudaStream_t stream) noexcept;

/// One token of the conv (causal_conv_silu_step): shifts state left, appends the input and
/// writes out = silu(bias + sum_k weight[e, k] state[b, e, k]).
struct ConvStepArgs {
  const float* input = nullptr;  ///< (B, E), row stride input_row_stride
  std::int64_t input_row_stride = 0;
  DeviceParam weight;            ///< (E, K)
  DeviceParam bias;              ///< (E), optional
  float* state = nullptr;        ///< (B, E, K), in/out
  float* out = nullptr;          ///< (B, E), contiguous
  std::int64_t batch = 0, d_inner = 0, d_conv = 0;
};

cudaError_t launch_causal_conv_silu_step(const ConvStepArgs& args, cudaStream_t stream) noexcept;

/// The scan's f32 per-channel inputs: a = -exp(A_log), and D and dt_proj.bias widened to f32
/// where their outputs are non-null (f32 parameters are used in place instead).
struct ScanParamArgs {
  DeviceParam a_log;            ///< (E, N)
  float* a = nullptr;           ///< (E, N) out
  DeviceParam d;                ///< (E), optional
  float* d_f32 = nullptr;       ///< (E) out, or null
  DeviceParam dt_bias;          ///< (E)
  float* dt_bias_f32 = nullptr; ///< (E) out, or null
  std::int64_t d_inner = 0, d_state = 0;
};

cudaError_t launch_scan_params(const ScanParamArgs& args, cudaStream_t stream) noexcept;

/// The backward of launch_causal_conv_silu (causal_conv.hpp's causal_conv_silu_backward),
/// accumulating (+=).
struct ConvBackwardArgs {
  ConvArgs forward;                         ///< the forward's arguments (out and final_state unused)
  float* grad_out = nullptr;                ///< (B, L, E) contiguous; in: d/d out, overwritten with
                                            ///< d/d the pre-activation (before the SiLU)
  const float* grad_final_state = nullptr;  ///< (B, E, K), or null for zero
  float* grad_input = nullptr;              ///< (B, L, E), row stride grad_input_row_stride, +=
  std::int64_t grad_input_row_stride = 0;
  float* grad_weight = nullptr;             ///< (E, K) +=, or null (frozen)
  float* grad_bias = nullptr;               ///< (E) +=, or null (frozen or absent)
  float* grad_initial_state = nullptr;      ///< (B, E, K) +=, or null; ignored without initial_state
};

/// Enqueues the conv's backward: through the SiLU (in place in grad_out), then the weight and
/// bias gradients (deterministic per-channel reductions) and the input and initial-state
/// gradients (a gather per input, which also adds the final state's gradient to the inputs it
/// copied).
cudaError_t launch_causal_conv_silu_backward(const ConvBackwardArgs& args, cudaStream_t stream) noexcept;

/// Enqueues grad_a_log (E, N) += grad_a (E, N) * a (E, N): the chain rule through
/// A = -exp(A_log), whose derivative is A itself.
cudaError_t launch_add_a_log_grad(const float* grad_a, const float* a, float* grad_a_log, std::int64_t count,
                                  cudaStream_t stream) noexcept;

}  // namespace mambakit::mixer_s6
