#pragma once
// The interface between scan/cuda's host logic (cuda_scan_plugin.cpp) and its kernels
// (*_kernels.cu): plain parameter structs of device pointers and strides, and one launcher per
// kernel. Launchers only enqueue work on `stream` and return the launch's error; they allocate
// nothing. The host side checks shapes, owns the workspace and turns errors into a Status.
//
// Dimensions: B batch, L length, E d_inner, N d_state.

#include <cuda_runtime_api.h>

#include <cstdint>

#include "mambakit/sdk/dtype.hpp"
#include "mambakit/sdk/tensor_view.hpp"

namespace mambakit::scan_cuda {

/// Largest d_state the kernels accept (their per-block state arrays are sized by it).
inline constexpr int kMaxDState = 256;

/// Largest batch: the batch is the grid's y dimension.
inline constexpr std::int64_t kMaxBatch = 65535;

/// A device tensor of rank 1 to 3 with unit stride in its last dimension: element (i, j, k) of
/// a rank-3 view is at data[i * stride0 + j * stride1 + k], (i, j) of a rank-2 view at
/// data[i * stride0 + j], (i) of a rank-1 view at data[i]. `data == nullptr`: absent.
struct DeviceView {
  void* data = nullptr;
  std::int64_t stride0 = 0;
  std::int64_t stride1 = 0;
};

/// The device view of an SDK view (absent stays absent).
inline DeviceView device_view(const sdk::TensorView& view) noexcept {
  DeviceView out;
  out.data = view.data;
  if (view.rank >= 2) out.stride0 = view.strides[0];
  if (view.rank >= 3) out.stride1 = view.strides[1];
  return out;
}

/// Sizes of a scan.
struct ScanShape {
  std::int64_t batch = 0;
  std::int64_t length = 0;
  std::int64_t d_inner = 0;
  std::int64_t d_state = 0;
};

/// A forward scan. `dtype` is the problem dtype (f32, f16 or bf16) of u, delta, B, C, z and y;
/// A, D, delta_bias and the states are f32.
struct ForwardParams {
  ScanShape shape;
  sdk::DType dtype = sdk::DType::kF32;
  DeviceView u;              ///< (B, L, E)
  DeviceView delta;          ///< (B, L, E), before bias and softplus
  DeviceView A;              ///< (E, N)
  DeviceView B;              ///< (B, L, N)
  DeviceView C;              ///< (B, L, N)
  DeviceView D;              ///< (E), optional
  DeviceView z;              ///< (B, L, E), optional
  DeviceView delta_bias;     ///< (E), optional
  DeviceView initial_state;  ///< (B, E, N), optional
  DeviceView final_state;    ///< (B, E, N), optional output
  DeviceView y;              ///< (B, L, E), output
  bool delta_softplus = true;
};

/// A backward scan: the forward inputs, the upstream gradients and the gradient outputs
/// (absent ones are not computed). grad_B and grad_C are f32 accumulators here, whatever the
/// problem dtype: the host points them at the output (f32 problems) or at zeroed workspace.
struct BackwardParams {
  ForwardParams forward;          ///< forward.y and forward.final_state are ignored
  const float* chunk_states = nullptr;  ///< (B, E, n_chunks, N): h at the start of every chunk
  DeviceView grad_y;              ///< (B, L, E)
  DeviceView grad_final_state;    ///< (B, E, N), optional, f32
  DeviceView grad_u;              ///< (B, L, E) +=
  DeviceView grad_delta;          ///< (B, L, E) +=
  DeviceView grad_A;              ///< (E, N) +=, f32
  DeviceView grad_B;              ///< (B, L, N) +=, f32 accumulator
  DeviceView grad_C;              ///< (B, L, N) +=, f32 accumulator
  DeviceView grad_D;              ///< (E) +=, f32
  DeviceView grad_z;              ///< (B, L, E) +=
  DeviceView grad_delta_bias;     ///< (E) +=, f32
  DeviceView grad_initial_state;  ///< (B, E, N) +=, f32
};

/// One decode step. u, delta, B, C, z and y have the problem dtype; A, D, delta_bias and the
/// state are f32.
struct StepParams {
  std::int64_t batch = 0;
  std::int64_t d_inner = 0;
  std::int64_t d_state = 0;
  sdk::DType dtype = sdk::DType::kF32;
  DeviceView u;           ///< (B, E)
  DeviceView delta;       ///< (B, E)
  DeviceView A;           ///< (E, N)
  DeviceView B;           ///< (B, N)
  DeviceView C;           ///< (B, N)
  DeviceView D;           ///< (E), optional
  DeviceView z;           ///< (B, E), optional
  DeviceView delta_bias;  ///< (E), optional
  DeviceView state;       ///< (B, E, N), in/out
  DeviceView y;           ///< (B, E), output
  bool delta_softplus = true;
};

/// Time steps per chunk for a sequence of `length` steps (the forward and the backward use the
/// same chunks, so the backward's chunk states line up with its chunks).
std::int64_t chunk_length(std::int64_t length) noexcept;

/// Number of chunks of a sequence of `length` steps.
inline std::int64_t chunk_count(std::int64_t length) noexcept {
  const std::int64_t chunk = chunk_length(length);
  return (length + chunk - 1) / chunk;
}

/// Enqueues the forward scan: writes y and, when present, the final state.
cudaError_t launch_forward(const ForwardParams& params, cudaStream_t stream) noexcept;

/// Enqueues the state pass of the backward: writes h at the start of every chunk into
/// `chunk_states` (B, E, chunk_count(L), N), f32, contiguous. Reads u, delta, A, B,
/// delta_bias and initial_state of `params` only.
cudaError_t launch_chunk_states(const ForwardParams& params, float* chunk_states, cudaStream_t stream) noexcept;

/// Enqueues the backward scan (see BackwardParams); needs the chunk states of the same inputs.
cudaError_t launch_backward(const BackwardParams& params, cudaStream_t stream) noexcept;

/// Enqueues grad += accumulator over a (B, L, N) tensor: `grad` of `dtype` (strided),
/// `accumulator` f32 and contiguous.
cudaError_t launch_add_accumulator(DeviceView grad, sdk::DType dtype, const float* accumulator,
                                   const ScanShape& shape, cudaStream_t stream) noexcept;

/// Enqueues one decode step (see StepParams).
cudaError_t launch_step(const StepParams& params, cudaStream_t stream) noexcept;

}  // namespace mambakit::scan_cuda
