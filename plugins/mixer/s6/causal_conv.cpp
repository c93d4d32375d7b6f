#include "causal_conv.hpp"

#include <cmath>
#include <vector>

namespace mambakit::mixer_s6 {

namespace {

inline float silu(float v) { return v / (1.0f + std::exp(-v)); }

}  // namespace

void causal_conv_silu(const float* input, std::int64_t input_row_stride, const float* weight, const float* bias,
                      const float* initial_state, float* final_state, float* out, std::int64_t batch,
                      std::int64_t length, std::int64_t d_inner, std::int64_t d_conv, int n_threads) {
  const std::int64_t E = d_inner, K = d_conv;
  // Transposed weights (K, E) so the inner loop runs over contiguous channels.
  std::vector<float> weight_t(static_cast<std::size_t>(K * E));
  for (std::int64_t e = 0; e < E; ++e) {
    for (std::int64_t k = 0; k < K; ++k) weight_t[k * E + e] = weight[e * K + k];
  }
#pragma omp parallel for num_threads(n_threads) collapse(2) schedule(static)
  for (std::int64_t b = 0; b < batch; ++b) {
    for (std::int64_t t = 0; t < length; ++t) {
      float* row = out + (b * length + t) * E;
      for (std::int64_t e = 0; e < E; ++e) row[e] = bias != nullptr ? bias[e] : 0.0f;
      for (std::int64_t k = 0; k < K; ++k) {
        const std::int64_t source = t - K + 1 + k;
        const float* w = &weight_t[k * E];
        if (source >= 0) {
          const float* x = input + (b * length + source) * input_row_stride;
          for (std::int64_t e = 0; e < E; ++e) row[e] += w[e] * x[e];
        } else if (initial_state != nullptr) {
          const float* state = initial_state + b * E * K;
          const std::int64_t slot = source + K;
          for (std::int64_t e = 0; e < E; ++e) row[e] += w[e] * state[e * K + slot];
        }
      }
      for (std::int64_t e = 0; e < E; ++e) row[e] = silu(row[e]);
    }
  }
  if (final_state == nullptr) return;
  for (std::int64_t b = 0; b < batch; ++b) {
    for (std::int64_t slot = 0; slot < K; ++slot) {
      const std::int64_t time = length - K + slot;
      for (std::int64_t e = 0; e < E; ++e) {
        float value = 0.0f;
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

void causal_conv_silu_step(const float* input, std::int64_t input_row_stride, const float* weight, const float* bias,
                           float* state, float* out, std::int64_t batch, std::int64_t d_inner, std::int64_t d_conv) {
  const std::int64_t E = d_inner, K = d_conv;
  for (std::int64_t b = 0; b < batch; ++b) {
    for (std::int64_t e = 0; e < E; ++e) {
      float* window = state + (b * E + e) * K;
      for (std::int64_t k = 0; k + 1 < K; ++k) window[k] = window[k + 1];
      window[K - 1] = input[b * input_row_stride + e];
      float sum = bias != nullptr ? bias[e] : 0.0f;
      for (std::int64_t k = 0; k < K; ++k) sum += weight[e * K + k] * window[k];
      out[b * E + e] = silu(sum);
    }
  }
}

}  // namespace mambakit::mixer_s6
