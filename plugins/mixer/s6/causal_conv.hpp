#pragma once
// The S6 mixer's causal depthwise convolution over time, followed by SiLU, and its decode
// step. The conv state holds the last K conv *inputs* per channel, oldest first: slot k holds
// the input of time k - K relative to the first new token.
//
// Dimensions: B batch, L length, E d_inner, K d_conv.

#include <cstdint>

namespace mambakit::mixer_s6 {

/// out (B, L, E) = silu(bias + sum_k weight[e, k] * input[t - K + 1 + k]), where inputs before
/// t = 0 come from `initial_state` (B, E, K) or are zero when it is null.
/// input: (B, L, E) with row stride `input_row_stride` (elements between consecutive (b, t)).
/// weight: (E, K); bias: (E) or null. When `final_state` (B, E, K) is non-null, the last K
/// inputs (including initial-state ones when L < K) are written there.
void causal_conv_silu(const float* input, std::int64_t input_row_stride, const float* weight, const float* bias,
                      const float* initial_state, float* final_state, float* out, std::int64_t batch,
                      std::int64_t length, std::int64_t d_inner, std::int64_t d_conv, int n_threads);

/// One token: shifts `state` (B, E, K) left, appends input (B, E; row stride
/// `input_row_stride`), and writes out (B, E) = silu(bias + sum_k weight[e, k] state[b, e, k]).
void causal_conv_silu_step(const float* input, std::int64_t input_row_stride, const float* weight, const float* bias,
                           float* state, float* out, std::int64_t batch, std::int64_t d_inner, std::int64_t d_conv);

}  // namespace mambakit::mixer_s6
