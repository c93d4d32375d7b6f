#pragma once
// The official MHA's optional causal depthwise conv1d over the qkv columns, with bias and no
// activation (nn.Conv1d(Q, Q, K, groups=Q, padding=K-1), the last K-1 outputs dropped):
//   out[t, e] = bias[e] + sum_k weight[e, k] in[t - K + 1 + k, e]
// Inputs before t = 0 come from the state (B, E, K-1), the last K-1 inputs of the previous
// call, oldest first (slot s holds time s - (K-1)), or are zero without one. Unlike the
// official decode (which caches conv outputs), the state always holds inputs, so decode
// equals forward.
//
// Dimensions: B batch, L length, E channels, K d_conv (W = K - 1 state slots).

#include <algorithm>
#include <cstdint>
#include <vector>

namespace mambakit::mixer_attention {

/// out (B, L, E; row stride ld_out) = the conv of in (B, L, E; row stride ld_in) with weight
/// (E, K) and bias (E, or null). `initial` (B, E, K-1) or null; `final_state` (B, E, K-1), when
/// not null, receives the last K-1 inputs (from `initial` where L < K-1).
template <class T>
void depthwise_conv(const T* in, std::int64_t ld_in, const T* weight, const T* bias, const T* initial,
                    T* final_state, T* out, std::int64_t ld_out, std::int64_t batch, std::int64_t length,
                    std::int64_t channels, std::int64_t d_conv, int n_threads) {
  const std::int64_t E = channels, K = d_conv, W = K - 1;
  std::vector<T> weight_t(static_cast<std::size_t>(K * E));  // (K, E): channels contiguous
  for (std::int64_t e = 0; e < E; ++e) {
    for (std::int64_t k = 0; k < K; ++k) weight_t[static_cast<std::size_t>(k * E + e)] = weight[e * K + k];
  }
#pragma omp parallel for num_threads(n_threads) schedule(static)
  for (std::int64_t m = 0; m < batch * length; ++m) {
    const std::int64_t b = m / length, t = m % length;
    T* row = out + m * ld_out;
    for (std::int64_t e = 0; e < E; ++e) row[e] = bias != nullptr ? bias[e] : T(0);
    for (std::int64_t k = 0; k < K; ++k) {
      const std::int64_t source = t - W + k;
      const T* w = weight_t.data() + k * E;
      if (source >= 0) {
        const T* x = in + (b * length + source) * ld_in;
        for (std::int64_t e = 0; e < E; ++e) row[e] += w[e] * x[e];
      } else if (initial != nullptr) {
        const T* state = initial + b * E * W + source + W;
        for (std::int64_t e = 0; e < E; ++e) row[e] += w[e] * state[e * W];
      }
    }
  }
  if (final_state == nullptr) return;
  for (std::int64_t b = 0; b < batch; ++b) {
    for (std::int64_t e = 0; e < E; ++e) {
      for (std::int64_t s = 0; s < W; ++s) {
        const std::int64_t source = length - W + s;
        T value = T(0);
        if (source >= 0) {
          value = in[(b * length + source) * ld_in + e];
        } else if (initial != nullptr) {
          value = initial[(b * E + e) * W + source + W];
        }
        final_state[(b * E + e) * W + s] = value;
      }
    }
  }
}

/// Backward of depthwise_conv from grad_out (B, L, E; row stride ld_grad_out) and grad_final
/// (B, E, K-1, or null): grad_in (row stride ld_grad_in) +=, grad_weight (E, K) and grad_bias
/// (E) += (each skipped when null), grad_initial (B, E, K-1) += when both it and `initial` are
/// given. Threads own blocks of channels, so the sums run in a fixed order.
template <class T>
void depthwise_conv_backward(const T* in, std::int64_t ld_in, const T* weight, const T* initial, const T* grad_out,
                             std::int64_t ld_grad_out, const T* grad_final, T* grad_in, std::int64_t ld_grad_in,
                             T* grad_weight, T* grad_bias, T* grad_initial, std::int64_t batch, std::int64_t length,
                             std::int64_t channels, std::int64_t d_conv, int n_threads) {
  const std::int64_t E = channels, K = d_conv, W = K - 1;
  constexpr std::int64_t kBlock = 16;
  const std::int64_t blocks = (E + kBlock - 1) / kBlock;
  T* grad_state = initial != nullptr ? grad_initial : nullptr;
#pragma omp parallel for num_threads(n_threads) schedule(static)
  for (std::int64_t block = 0; block < blocks; ++block) {
    const std::int64_t e0 = block * kBlock, e1 = std::min(E, e0 + kBlock);
    auto value = [&](std::int64_t b, std::int64_t source, std::int64_t e) -> T {
      if (source >= 0) return in[(b * length + source) * ld_in + e];
      return initial != nullptr ? initial[(b * E + e) * W + source + W] : T(0);
    };
    auto add_grad = [&](std::int64_t b, std::int64_t source, std::int64_t e, T g) {
      if (source >= 0) {
        grad_in[(b * length + source) * ld_grad_in + e] += g;
      } else if (grad_state != nullptr) {
        grad_state[(b * E + e) * W + source + W] += g;
      }
    };
    for (std::int64_t b = 0; b < batch; ++b) {
      for (std::int64_t t = 0; t < length; ++t) {
        const T* g_row = grad_out + (b * length + t) * ld_grad_out;
        for (std::int64_t e = e0; e < e1; ++e) {
          const T g = g_row[e];
          if (grad_bias != nullptr) grad_bias[e] += g;
          for (std::int64_t k = 0; k < K; ++k) {
            const std::int64_t source = t - W + k;
            if (grad_weight != nullptr) grad_weight[e * K + k] += g * value(b, source, e);
            add_grad(b, source, e, g * weight[e * K + k]);
          }
        }
      }
      if (grad_final != nullptr) {
        for (std::int64_t e = e0; e < e1; ++e) {
          for (std::int64_t s = 0; s < W; ++s) add_grad(b, length - W + s, e, grad_final[(b * E + e) * W + s]);
        }
      }
    }
  }
}

/// One token per row: out (B, E) = bias + the window of the state's K-1 inputs and in (B, E;
/// row stride ld_in); then the state (B, E, K-1) shifts by one and takes in. With K = 1 the
/// state is unused (null).
template <class T>
void depthwise_conv_step(const T* in, std::int64_t ld_in, const T* weight, const T* bias, T* state, T* out,
                         std::int64_t ld_out, std::int64_t batch, std::int64_t channels, std::int64_t d_conv) {
  const std::int64_t E = channels, K = d_conv, W = K - 1;
  for (std::int64_t b = 0; b < batch; ++b) {
    for (std::int64_t e = 0; e < E; ++e) {
      const T x = in[b * ld_in + e];
      const T* w = weight + e * K;
      T sum = (bias != nullptr ? bias[e] : T(0)) + w[W] * x;
      if (W > 0) {
        T* window = state + (b * E + e) * W;
        for (std::int64_t s = 0; s < W; ++s) sum += w[s] * window[s];
        for (std::int64_t s = 0; s + 1 < W; ++s) window[s] = window[s + 1];
        window[W - 1] = x;
      }
      out[b * ld_out + e] = sum;
    }
  }
}

}  // namespace mambakit::mixer_attention
