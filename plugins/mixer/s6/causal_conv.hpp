#pragma once
// The S6 mixer's causal depthwise convolution over time, followed by SiLU, and its decode
// step. The conv state holds the last K conv *inputs* per channel, oldest first: slot k holds
// the input of time k - K relative to the first new token.
//
// Templated on the element type T (float, or double); instantiated for both.
//
// Dimensions: B batch, L length, E d_inner, K d_conv.

#include <cstdint>

namespace mambakit::mixer_s6 {

/// out (B, L, E) = silu(bias + sum_k weight[e, k] * input[t - K + 1 + k]), where inputs before
/// t = 0 come from `initial_state` (B, E, K) or are zero when it is null.
/// input: (B, L, E) with row stride `input_row_stride` (elements between consecutive (b, t)).
/// weight: (E, K); bias: (E) or null. When `final_state` (B, E, K) is non-null, the last K
/// inputs (including initial-state ones when L < K) are written there.
template <class T>
void causal_conv_silu(const T* input, std::int64_t input_row_stride, const T* weight, const T* bias,
                      const T* initial_state, T* final_state, T* out, std::int64_t batch,
                      std::int64_t length, std::int64_t d_inner, std::int64_t d_conv, int n_threads);

/// Backward of causal_conv_silu, accumulating (+=). Recomputes the pre-activation from
/// `input`, `weight`, `bias` and `initial_state` (the forward's arguments), then with
/// grad_out (B, L, E) the gradient of `out`, and grad_final_state (B, E, K) that of the final
/// state (or null for zero):
///   grad_input (B, L, E; row stride `grad_input_row_stride`) += d/d input,
///   grad_weight (E, K) and grad_bias (E) += their gradients, each skipped when null,
///   grad_initial_state (B, E, K) += d/d initial_state, when both it and initial_state are
///   non-null (a null initial_state is a constant zero state and gets no gradient).
/// Parallel over blocks of channels with `n_threads` threads; deterministic.
template <class T>
void causal_conv_silu_backward(const T* input, std::int64_t input_row_stride, const T* weight,
                               const T* bias, const T* initial_state, const T* grad_out,
                               const T* grad_final_state, T* grad_input, std::int64_t grad_input_row_stride,
                               T* grad_weight, T* grad_bias, T* grad_initial_state, std::int64_t batch,
                               std::int64_t length, std::int64_t d_inner, std::int64_t d_conv, int n_threads);

/// One token: shifts `state` (B, E, K) left, appends input (B, E; row stride
/// `input_row_stride`), and writes out (B, E) = silu(bias + sum_k weight[e, k] state[b, e, k]).
template <class T>
void causal_conv_silu_step(const T* input, std::int64_t input_row_stride, const T* weight, const T* bias,
                           T* state, T* out, std::int64_t batch, std::int64_t d_inner, std::int64_t d_conv);

}  // namespace mambakit::mixer_s6
