#pragma once
// The causal depthwise convolution over time of Mamba's mixers, followed by SiLU, and its
// decode step. The conv state holds the last K conv *inputs* per channel, oldest first: slot k holds
// the input of time k - K relative to the first new token.
//
// Templated on the element type T (float, or double).
//
// Dimensions: B batch, L length, E channels (d_inner for Mamba-1, conv_dim for Mamba-2), K d_conv.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "mambakit/sdk/util/simd.hpp"

namespace mambakit::sdk::util {

namespace causal_conv_detail {

template <class T>
T silu(T v) {
  return v / (T(1) + std::exp(-v));
}

/// v[i] = silu(v[i]) for i < count, a SIMD vector at a time.
template <class T>
void silu_in_place(T* v, std::int64_t count) {
  constexpr int kWidth = simd::kWidth<T>;
  for (std::int64_t i = 0; i < count; i += kWidth) {
    const int lanes = static_cast<int>(std::min<std::int64_t>(kWidth, count - i));
    const simd::Vec<T> x = simd::load(v + i, lanes);
    simd::store(v + i, simd::silu(x), lanes);
  }
}

/// One step of E channels with a window of kWidth: each channel's window (kWidth values, oldest
/// first) shifts by one and takes input[e]; out[e] = bias[e] + the window dot the channel's weights.
template <int kWidth, class T>
void shift_and_sum(const T* input, const T* weight, const T* bias, T* state, T* out, std::int64_t E) {
  for (std::int64_t e = 0; e < E; ++e) {
    T* window = state + e * kWidth;
    const T* w = weight + e * kWidth;
    T next[kWidth];
    for (int k = 0; k + 1 < kWidth; ++k) next[k] = window[k + 1];
    next[kWidth - 1] = input[e];
    T sum = bias != nullptr ? bias[e] : T(0);
    for (int k = 0; k < kWidth; ++k) {
      sum += w[k] * next[k];
      window[k] = next[k];
    }
    out[e] = sum;
  }
}

}  // namespace causal_conv_detail

/// out (B, L, E) = silu(bias + sum_k weight[e, k] * input[t - K + 1 + k]), where inputs before
/// t = 0 come from `initial_state` (B, E, K) or are zero when it is null.
/// input: (B, L, E) with row stride `input_row_stride` (elements between consecutive (b, t)).
/// weight: (E, K); bias: (E) or null. When `final_state` (B, E, K) is non-null, the last K
/// inputs (including initial-state ones when L < K) are written there.
template <class T>
void causal_conv_silu(const T* input, std::int64_t input_row_stride, const T* weight, const T* bias,
                      const T* initial_state, T* final_state, T* out, std::int64_t batch,
                      std::int64_t length, std::int64_t d_inner, std::int64_t d_conv, int n_threads) {
  const std::int64_t E = d_inner, K = d_conv;
  // Transposed weights (K, E) so the inner loop runs over contiguous channels.
  std::vector<T> weight_t(static_cast<std::size_t>(K * E));
  for (std::int64_t e = 0; e < E; ++e) {
    for (std::int64_t k = 0; k < K; ++k) weight_t[k * E + e] = weight[e * K + k];
  }
#pragma omp parallel for num_threads(n_threads) collapse(2) schedule(static)
  for (std::int64_t b = 0; b < batch; ++b) {
    for (std::int64_t t = 0; t < length; ++t) {
      T* row = out + (b * length + t) * E;
      for (std::int64_t e = 0; e < E; ++e) row[e] = bias != nullptr ? bias[e] : T(0);
      for (std::int64_t k = 0; k < K; ++k) {
        const std::int64_t source = t - K + 1 + k;
        const T* w = &weight_t[k * E];
        if (source >= 0) {
          const T* x = input + (b * length + source) * input_row_stride;
          for (std::int64_t e = 0; e < E; ++e) row[e] += w[e] * x[e];
        } else if (initial_state != nullptr) {
          const T* state = initial_state + b * E * K;
          const std::int64_t slot = source + K;
          for (std::int64_t e = 0; e < E; ++e) row[e] += w[e] * state[e * K + slot];
        }
      }
      causal_conv_detail::silu_in_place(row, E);
    }
  }
  if (final_state == nullptr) return;
  for (std::int64_t b = 0; b < batch; ++b) {
    for (std::int64_t slot = 0; slot < K; ++slot) {
      const std::int64_t time = length - K + slot;
      for (std::int64_t e = 0; e < E; ++e) {
        T value = T(0);
        if (time >= 0) {
          value = input[(b * length + time) * input_row_stride + e];
        } else if (initial_state != nullptr) {
          value = initial_state[(b * E + e) * K + time + K];
        }
        final_state[(b * E + e) * K + slot] = value;
      }
    }
  }
}

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
                               std::int64_t length, std::int64_t d_inner, std::int64_t d_conv, int n_threads) {
  const std::int64_t E = d_inner, K = d_conv;
  // Channels are independent (depthwise), so each thread owns a block of channels: their
  // weight and bias gradients, and their columns of grad_input and grad_initial_state.
  constexpr std::int64_t kBlock = 16;
  const std::int64_t n_blocks = (E + kBlock - 1) / kBlock;
  const bool with_state = initial_state != nullptr;
  T* grad_state = with_state ? grad_initial_state : nullptr;
#pragma omp parallel for num_threads(n_threads) schedule(static)
  for (std::int64_t block = 0; block < n_blocks; ++block) {
    const std::int64_t e0 = block * kBlock, width = std::min(kBlock, E - e0);
    // Input of time `source` (>= -K) for channel e of row b, from the initial state before 0.
    auto value = [&](std::int64_t b, std::int64_t source, std::int64_t e) -> T {
      if (source >= 0) return input[(b * length + source) * input_row_stride + e];
      return with_state ? initial_state[(b * E + e) * K + source + K] : T(0);
    };
    auto add_grad = [&](std::int64_t b, std::int64_t source, std::int64_t e, T g) {
      if (source >= 0) {
        grad_input[(b * length + source) * grad_input_row_stride + e] += g;
      } else if (grad_state != nullptr) {
        grad_state[(b * E + e) * K + source + K] += g;
      }
    };
    for (std::int64_t b = 0; b < batch; ++b) {
      for (std::int64_t t = 0; t < length; ++t) {
        const T* g_row = grad_out + (b * length + t) * E;
        for (std::int64_t i = 0; i < width; ++i) {
          const std::int64_t e = e0 + i;
          const T* w = weight + e * K;
          T pre = bias != nullptr ? bias[e] : T(0);
          for (std::int64_t k = 0; k < K; ++k) pre += w[k] * value(b, t - K + 1 + k, e);
          // d silu(a)/da = s (1 + a (1 - s)), s = sigmoid(a).
          const T s = T(1) / (T(1) + std::exp(-pre));
          const T g = g_row[e] * s * (T(1) + pre * (T(1) - s));
          if (grad_bias != nullptr) grad_bias[e] += g;
          for (std::int64_t k = 0; k < K; ++k) {
            const std::int64_t source = t - K + 1 + k;
            if (grad_weight != nullptr) grad_weight[e * K + k] += g * value(b, source, e);
            add_grad(b, source, e, g * w[k]);
          }
        }
      }
      if (grad_final_state != nullptr) {
        // The final state is the last K inputs: slot k holds time L - K + k.
        for (std::int64_t i = 0; i < width; ++i) {
          const std::int64_t e = e0 + i;
          for (std::int64_t slot = 0; slot < K; ++slot) {
            add_grad(b, length - K + slot, e, grad_final_state[(b * E + e) * K + slot]);
          }
        }
      }
    }
  }
}

/// One token: shifts `state` (B, E, K) left, appends input (B, E; row stride
/// `input_row_stride`), and writes out (B, E) = silu(bias + sum_k weight[e, k] state[b, e, k]).
template <class T>
void causal_conv_silu_step(const T* input, std::int64_t input_row_stride, const T* weight, const T* bias,
                           T* state, T* out, std::int64_t batch, std::int64_t d_inner, std::int64_t d_conv) {
  const std::int64_t E = d_inner, K = d_conv;
  for (std::int64_t b = 0; b < batch; ++b) {
    if (K == 4) {  // Mamba's d_conv: a fixed window the compiler vectorizes (several times the loop below)
      causal_conv_detail::shift_and_sum<4>(input + b * input_row_stride, weight, bias, state + b * E * K, out + b * E, E);
    } else {
      for (std::int64_t e = 0; e < E; ++e) {
        T* window = state + (b * E + e) * K;
        for (std::int64_t k = 0; k + 1 < K; ++k) window[k] = window[k + 1];
        window[K - 1] = input[b * input_row_stride + e];
        T sum = bias != nullptr ? bias[e] : T(0);
        for (std::int64_t k = 0; k < K; ++k) sum += weight[e * K + k] * window[k];
        out[b * E + e] = sum;
      }
    }
    causal_conv_detail::silu_in_place(out + b * E, E);
  }
}

}  // namespace mambakit::sdk::util
