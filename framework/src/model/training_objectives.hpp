#pragma once
// The training objectives on the host, shared by the CPU model and the CUDA one (which runs
// the LM loss as a device kernel, loss_kernels.cu, with the same math): next-token and
// classification cross-entropy with their gradients, and the dropout mask of classification.
//
// Dimensions: B batch, L length, V logits per position, C classes.

#include <cstdint>
#include <vector>

#include "mambakit/tensor.hpp"

namespace mambakit::model {

/// The number of next-token targets of a causal-LM batch: per row, its valid length (lengths[b],
/// or L when `lengths` is empty) minus one. Throws naming the batch's shape when it is zero.
std::int64_t lm_target_count(std::int64_t batch, std::int64_t length, const std::vector<std::int32_t>& lengths);

/// Mean next-token cross-entropy of logits (B, L, V) against the tokens (within
/// tokens.lengths); writes its gradient into grad (B, L, V) unless grad is nullptr, leaving the
/// positions without a target untouched.
double lm_cross_entropy(const float* logits, std::int64_t vocab, const TokenBatch& tokens, float* grad, int n_threads);

/// Mean cross-entropy of scores (B, C) against one label per row; writes its gradient into
/// grad (B, C). Throws naming the row for a missing or out-of-range label.
double classification_cross_entropy(const FloatTensor& scores, const std::vector<std::int32_t>& labels, FloatTensor& grad);

/// The inverted-dropout mask of rate p for `count` values: each 0 or 1/(1-p), drawn in order
/// from `seed` (the same seed gives the same mask on every device).
std::vector<float> dropout_mask(std::size_t count, double p, std::uint64_t seed);

}  // namespace mambakit::model
