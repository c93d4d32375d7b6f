#pragma once
// The causal-LM loss on a CUDA device: next-token cross-entropy and its gradient, the math of
// framework/src/model/training_objectives.cpp's lm_cross_entropy row for row (the row maximum
// in f32, the log-sum-exp in f64), so the logits never leave the device. The launch queues work
// on `stream` and returns the launch's error; it neither synchronises nor allocates.
//
// Dimensions: B batch, L length, M = B x L positions, V logits per position.

#include <cstdint>

#include <cuda_runtime_api.h>

namespace mambakit::cuda {

/// For each position m = (b, t) with a target (t + 1 < the row's valid length: lengths[b]
/// capped at L, or L when `lengths` is nullptr): row_losses[m] = logsumexp(logits[m]) -
/// logits[m, ids[m + 1]], and, when `grad` is not nullptr, grad[m] = (softmax(logits[m]) -
/// onehot(ids[m + 1])) / count. Positions without a target get row_losses[m] = 0 and a zero
/// gradient row. The loss is the sum of row_losses over count (lm_target_count()).
/// logits (M, V) f32, ids (M) i32, lengths (B) i32 or nullptr, grad (M, V) f32 or nullptr
/// (overwritten), row_losses (M) f64; all on the device, ids checked to lie in [0, V).
cudaError_t launch_lm_cross_entropy(const float* logits, const std::int32_t* ids, const std::int32_t* lengths,
                                    std::int64_t batch, std::int64_t length, std::int64_t vocab, std::int64_t count,
                                    float* grad, double* row_losses, cudaStream_t stream);

}  // namespace mambakit::cuda
