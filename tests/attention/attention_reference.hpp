#pragma once
// The official MHA (mamba_ssm/modules/mha.py) written out plainly in double precision, token
// by token, as the independent oracle of the attention mixer's forward:
//   in = W_in x + b_in;  qkv | up | gate = in;  qkv = conv1d over [conv state, inputs] (+ bias);
//   q, k rotated at position p_b + t (flash-attn RotaryEmbedding: inv_freq and angles in f32);
//   per head h (kv head h / (H / Hkv)): softmax over the held keys and the new ones up to t;
//   out = W_out [context, up * silu(gate)] + b_out.
// Parameters are looked up by their checkpoint names.
//
// Dimensions: B batch, L length, D d_model, H heads, Hkv kv heads, hd head_dim, R rotary dim.

#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "attention_mixer_harness.hpp"

namespace mambakit::test::attention {

/// Rotates (a, b) pairs of the first R elements of head x at position t.
inline void reference_rotary(double* x, const MixerOptions& o, std::int64_t t) {
  const std::int64_t half = o.rotary_dim / 2;
  for (std::int64_t i = 0; i < half; ++i) {
    const float inverse_frequency =
        1.0f / std::pow(static_cast<float>(o.rotary_base), static_cast<float>(2 * i) / static_cast<float>(o.rotary_dim));
    const double angle = static_cast<double>(static_cast<float>(t) * inverse_frequency);
    const std::int64_t ia = o.interleaved ? 2 * i : i, ib = o.interleaved ? 2 * i + 1 : i + half;
    const double a = x[ia], b = x[ib];
    x[ia] = a * std::cos(angle) - b * std::sin(angle);
    x[ib] = b * std::cos(angle) + a * std::sin(angle);
  }
}

/// y (B, L, D) of the official MHA from x (B, L, D) for rows that held positions[b] tokens:
/// their keys and values (after rotary) in k_held / v_held (B, C, Hkv, hd) and the last K - 1
/// qkv inputs in conv_held (B, Q, K - 1; zero when empty).
template <class T>
std::vector<double> reference_forward(const MixerOptions& o, std::vector<Tensor<T>>& params,
                                      const std::vector<T>& x, const std::vector<std::int64_t>& positions,
                                      const std::vector<T>& k_held, const std::vector<T>& v_held,
                                      std::int64_t capacity, const std::vector<T>& conv_held) {
  std::map<std::string, std::vector<double>> p;
  for (auto& tensor : params) p[tensor.name] = std::vector<double>(tensor.values.begin(), tensor.values.end());
  const std::int64_t B = static_cast<std::int64_t>(positions.size()), D = o.d_model;
  const std::int64_t L = static_cast<std::int64_t>(x.size()) / (B * D);
  const std::int64_t H = o.heads, Hkv = o.heads_kv, hd = o.head_dim, Q = o.qkv_dim(), U = o.mlp_columns();
  const std::int64_t I = Q + U, F = H * hd + U / 2, K = o.d_conv, G = H / Hkv;
  std::vector<double> y(static_cast<std::size_t>(B * L * D));
  for (std::int64_t b = 0; b < B; ++b) {
    const std::int64_t pos = positions[static_cast<std::size_t>(b)];
    // in_proj
    std::vector<std::vector<double>> in(static_cast<std::size_t>(L), std::vector<double>(static_cast<std::size_t>(I)));
    for (std::int64_t t = 0; t < L; ++t) {
      for (std::int64_t r = 0; r < I; ++r) {
        double sum = o.qkv_bias ? p["in_proj.bias"][static_cast<std::size_t>(r)] : 0.0;
        for (std::int64_t c = 0; c < D; ++c) {
          sum += p["in_proj.weight"][static_cast<std::size_t>(r * D + c)] * double(x[static_cast<std::size_t>((b * L + t) * D + c)]);
        }
        in[static_cast<std::size_t>(t)][static_cast<std::size_t>(r)] = sum;
      }
    }
    // conv over [held inputs, new inputs]
    std::vector<std::vector<double>> qkv(static_cast<std::size_t>(L), std::vector<double>(static_cast<std::size_t>(Q)));
    for (std::int64_t t = 0; t < L; ++t) {
      for (std::int64_t e = 0; e < Q; ++e) {
        if (K == 0) {
          qkv[static_cast<std::size_t>(t)][static_cast<std::size_t>(e)] = in[static_cast<std::size_t>(t)][static_cast<std::size_t>(e)];
          continue;
        }
        double sum = p["conv1d.bias"][static_cast<std::size_t>(e)];
        for (std::int64_t k = 0; k < K; ++k) {
          const std::int64_t source = t - (K - 1) + k;  // time of the input this tap reads
          double input = 0.0;
          if (source >= 0) {
            input = in[static_cast<std::size_t>(source)][static_cast<std::size_t>(e)];
          } else if (!conv_held.empty()) {
            input = double(conv_held[static_cast<std::size_t>((b * Q + e) * (K - 1) + source + K - 1)]);
          }
          sum += p["conv1d.weight"][static_cast<std::size_t>(e * K + k)] * input;
        }
        qkv[static_cast<std::size_t>(t)][static_cast<std::size_t>(e)] = sum;
      }
    }
    // rotary on q and k; the keys and values of the row: held, then new
    std::vector<std::vector<double>> keys, values;
    for (std::int64_t j = 0; j < pos; ++j) {
      keys.emplace_back(k_held.begin() + (b * capacity + j) * Hkv * hd, k_held.begin() + (b * capacity + j + 1) * Hkv * hd);
      values.emplace_back(v_held.begin() + (b * capacity + j) * Hkv * hd, v_held.begin() + (b * capacity + j + 1) * Hkv * hd);
    }
    for (std::int64_t t = 0; t < L; ++t) {
      auto& row = qkv[static_cast<std::size_t>(t)];
      if (o.rotary_dim > 0) {
        for (std::int64_t h = 0; h < H; ++h) reference_rotary(row.data() + h * hd, o, pos + t);
        for (std::int64_t h = 0; h < Hkv; ++h) reference_rotary(row.data() + H * hd + h * hd, o, pos + t);
      }
      keys.emplace_back(row.begin() + H * hd, row.begin() + (H + Hkv) * hd);
      values.emplace_back(row.begin() + (H + Hkv) * hd, row.begin() + (H + 2 * Hkv) * hd);
    }
    // attention, the MLP and out_proj
    for (std::int64_t t = 0; t < L; ++t) {
      std::vector<double> context(static_cast<std::size_t>(F), 0.0);
      for (std::int64_t h = 0; h < H; ++h) {
        const std::int64_t g = h / G, n = pos + t + 1;
        std::vector<double> scores(static_cast<std::size_t>(n));
        double largest = -INFINITY;
        for (std::int64_t j = 0; j < n; ++j) {
          double dot = 0.0;
          for (std::int64_t e = 0; e < hd; ++e) {
            dot += qkv[static_cast<std::size_t>(t)][static_cast<std::size_t>(h * hd + e)] *
                   keys[static_cast<std::size_t>(j)][static_cast<std::size_t>(g * hd + e)];
          }
          scores[static_cast<std::size_t>(j)] = o.scale() * dot;
          largest = std::max(largest, scores[static_cast<std::size_t>(j)]);
        }
        double total = 0.0;
        for (auto& s : scores) total += (s = std::exp(s - largest));
        for (std::int64_t j = 0; j < n; ++j) {
          for (std::int64_t e = 0; e < hd; ++e) {
            context[static_cast<std::size_t>(h * hd + e)] +=
                scores[static_cast<std::size_t>(j)] / total * values[static_cast<std::size_t>(j)][static_cast<std::size_t>(g * hd + e)];
          }
        }
      }
      for (std::int64_t j = 0; j < U / 2; ++j) {
        const double up = in[static_cast<std::size_t>(t)][static_cast<std::size_t>(Q + j)];
        const double gate = in[static_cast<std::size_t>(t)][static_cast<std::size_t>(Q + U / 2 + j)];
        context[static_cast<std::size_t>(H * hd + j)] = up * gate / (1.0 + std::exp(-gate));
      }
      for (std::int64_t r = 0; r < D; ++r) {
        double sum = o.out_bias ? p["out_proj.bias"][static_cast<std::size_t>(r)] : 0.0;
        for (std::int64_t c = 0; c < F; ++c) sum += p["out_proj.weight"][static_cast<std::size_t>(r * F + c)] * context[static_cast<std::size_t>(c)];
        y[static_cast<std::size_t>((b * L + t) * D + r)] = sum;
      }
    }
  }
  return y;
}

}  // namespace mambakit::test::attention
