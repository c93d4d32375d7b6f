#pragma once
// The framework's own layers on a CUDA device, mirroring framework/src/model/backbone_kernels.cpp
// operation for operation: embedding gather, RMSNorm, the residual add, and the greedy argmax
// of generation; for training, the backward of RMSNorm and of the embedding, and the dropout
// mask's product. Each launch queues work on `stream` and returns the launch's error
// (cudaSuccess or what cudaGetLastError() reports); none synchronises or allocates, so all can
// be captured in a CUDA graph. Gradient outputs accumulate (+=), as on the CPU.
//
// Dimensions: M rows (batch x length), D d_model, V vocabulary rows, R logits rows, S row stride.

#include <cstdint>

#include <cuda_runtime_api.h>

#include "mambakit/sdk/dtype.hpp"

namespace mambakit::cuda {

/// out (M, D) f32 = table[ids[m]] with table (V, D) held as f32, f16 or bf16 (widened
/// exactly). ids (M) i32 on the device, already checked to lie in [0, V).
cudaError_t launch_embedding(const std::int32_t* ids, const void* table, sdk::DType table_dtype, float* out,
                             std::int64_t rows, std::int64_t d_model, cudaStream_t stream);

/// out (M, D) = x (M, D) * rsqrt(mean(x^2) + eps) * weight (D): the sum of squares in f64,
/// the scale rounded to f32 once, then x * scale * weight in f32, as on the CPU.
cudaError_t launch_rms_norm(const float* x, const float* weight, float* out, std::int64_t rows, std::int64_t d_model,
                            double eps, cudaStream_t stream);

/// x (count) += y (count).
cudaError_t launch_add_in_place(float* x, const float* y, std::int64_t count, cudaStream_t stream);

/// x (count) *= y (count) (the dropout mask on the hidden states and on their gradient).
cudaError_t launch_multiply_in_place(float* x, const float* y, std::int64_t count, cudaStream_t stream);

/// Backward of launch_rms_norm() with x (M, D), weight (D) and grad_out (M, D): grad_x (M, D)
/// += d/dx and grad_weight (D) += d/dweight, as the CPU's rms_norm_backward computes them (row
/// sums and the weight gradient's sums in f64; blocks add their weight-gradient partial sums
/// atomically, so grad_weight's rounding varies from run to run). row_scales (M) f64 is scratch
/// the call writes.
/// grad_x must not alias x or grad_out.
cudaError_t launch_rms_norm_backward(const float* x, const float* weight, const float* grad_out, float* grad_x,
                                     float* grad_weight, double* row_scales, std::int64_t rows, std::int64_t d_model,
                                     double eps, cudaStream_t stream);

/// grad_table[ids[m]] (V, D) f32 += grad_out[m] (M, D): atomic adds, so rows with the same id
/// add in any order. ids (M) i32 on the device, already checked.
cudaError_t launch_embedding_backward(const std::int32_t* ids, const float* grad_out, float* grad_table,
                                      std::int64_t rows, std::int64_t d_model, cudaStream_t stream);

/// ids[r] (R) i32 = the index of the largest of logits[r * S + 0 .. count) (logits (R, S)),
/// the lowest index among equal values (std::max_element's rule for rows without NaN).
cudaError_t launch_argmax_rows(const float* logits, std::int64_t rows, std::int64_t row_stride, std::int64_t count,
                               std::int32_t* ids, cudaStream_t stream);

}  // namespace mambakit::cuda
