#pragma once
// The framework's own layers on a CUDA device, mirroring framework/src/model/backbone_kernels.cpp
// operation for operation: embedding gather, RMSNorm, the residual add, and the greedy argmax
// of generation. Each launch queues work on `stream` and returns the launch's error (cudaSuccess
// or what cudaGetLastError() reports); none synchronises or allocates, so all can be captured
// in a CUDA graph.
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

/// ids[r] (R) i32 = the index of the largest of logits[r * S + 0 .. count) (logits (R, S)),
/// the lowest index among equal values (std::max_element's rule for rows without NaN).
cudaError_t launch_argmax_rows(const float* logits, std::int64_t rows, std::int64_t row_stride, std::int64_t count,
                               std::int32_t* ids, cudaStream_t stream);

}  // namespace mambakit::cuda
