#pragma once
// The Mamba-2 mixer's elementwise pieces around the SSD scan, forward and backward, for T =
// float or double: dt from in_proj's dt columns, and the gated RMSNorm. Rows are independent;
// each function runs rows [0, rows) in parallel with `n_threads` threads.
//
//   dt = clamp(softplus(raw + dt_bias), lo, hi)       softplus(v) = v for v > 20, as torch
//   out = g * rsqrt(mean_group(g^2) + eps) * weight,  g = y * silu(z),  per group of E / G
//         channels (the official RMSNormGated with norm_before_gate = False; Hugging Face's
//         MambaRMSNormGated normalises over all E channels, which differs when G > 1)
//
// Dimensions: M rows (B * L), H heads, E d_inner, G groups.

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "mambakit/sdk/util/simd.hpp"

namespace mambakit::mixer_mamba2 {

template <class T>
T sigmoid(T v) {
  return T(1) / (T(1) + std::exp(-v));
}

template <class T>
T softplus(T v) {
  return v > T(20) ? v : std::log1p(std::exp(v));
}

/// dt (M, H) from raw (M, H; row stride ld_raw) and bias (H), a SIMD vector of heads at a time
/// (sdk::simd::softplus: the same convention as softplus() above).
template <class T>
void dt_forward(const T* raw, std::int64_t ld_raw, const T* bias, double lo, double hi, T* dt, std::int64_t rows,
                std::int64_t heads, int n_threads) {
  namespace simd = sdk::simd;
  constexpr int kWidth = simd::kWidth<T>;
  const simd::Vec<T> low = simd::splat(static_cast<T>(lo)), high = simd::splat(static_cast<T>(hi));
#pragma omp parallel for num_threads(n_threads) schedule(static)
  for (std::int64_t m = 0; m < rows; ++m) {
    for (std::int64_t h = 0; h < heads; h += kWidth) {
      const int lanes = static_cast<int>(std::min<std::int64_t>(kWidth, heads - h));
      simd::Vec<T> value = simd::softplus(simd::load(raw + m * ld_raw + h, lanes) + simd::load(bias + h, lanes));
      value = value < low ? low : value;
      value = value > high ? high : value;
      simd::store(dt + m * heads + h, value, lanes);
    }
  }
}

/// Backward of dt_forward: grad_raw (row stride ld_grad) = grad_dt * softplus'(raw + bias) where
/// the clamp passes its input (0 where it clamps); grad_bias (H) += its column sums, when given.
template <class T>
void dt_backward(const T* raw, std::int64_t ld_raw, const T* bias, double lo, double hi, const T* grad_dt,
                 T* grad_raw, std::int64_t ld_grad, T* grad_bias, std::int64_t rows, std::int64_t heads, int n_threads) {
#pragma omp parallel for num_threads(n_threads) schedule(static)
  for (std::int64_t m = 0; m < rows; ++m) {
    for (std::int64_t h = 0; h < heads; ++h) {
      const T v = raw[m * ld_raw + h] + bias[h];
      const T value = softplus(v);
      const bool passes = value >= T(lo) && value <= T(hi);
      grad_raw[m * ld_grad + h] = passes ? grad_dt[m * heads + h] * (v > T(20) ? T(1) : sigmoid(v)) : T(0);
    }
  }
  if (grad_bias == nullptr) return;
  for (std::int64_t m = 0; m < rows; ++m) {
    for (std::int64_t h = 0; h < heads; ++h) grad_bias[h] += grad_raw[m * ld_grad + h];
  }
}

/// out (M, E) = the gated norm of y (M, E) with gate z (M, E; row stride ld_z), a SIMD vector
/// of channels at a time.
template <class T>
void gated_norm_forward(const T* y, const T* z, std::int64_t ld_z, const T* weight, T* out, std::int64_t rows,
                        std::int64_t d_inner, std::int64_t groups, double eps, int n_threads) {
  namespace simd = sdk::simd;
  constexpr int kWidth = simd::kWidth<T>;
  const std::int64_t size = d_inner / groups;
#pragma omp parallel for num_threads(n_threads) schedule(static)
  for (std::int64_t m = 0; m < rows; ++m) {
    for (std::int64_t g = 0; g < groups; ++g) {
      const std::int64_t e0 = g * size;
      const T* yr = y + m * d_inner + e0;
      const T* zr = z + m * ld_z + e0;
      T* o = out + m * d_inner + e0;
      simd::Vec<T> squares = simd::splat(T(0));
      for (std::int64_t i = 0; i < size; i += kWidth) {
        const int lanes = static_cast<int>(std::min<std::int64_t>(kWidth, size - i));
        const simd::Vec<T> gate = simd::load(zr + i, lanes);
        const simd::Vec<T> gated = simd::load(yr + i, lanes) * simd::silu(gate);
        squares += gated * gated;
        simd::store(o + i, gated, lanes);
      }
      const simd::Vec<T> r = simd::splat(T(1) / std::sqrt(simd::hsum(squares) / T(size) + T(eps)));
      for (std::int64_t i = 0; i < size; i += kWidth) {
        const int lanes = static_cast<int>(std::min<std::int64_t>(kWidth, size - i));
        simd::store(o + i, simd::load(o + i, lanes) * r * simd::load(weight + e0 + i, lanes), lanes);
      }
    }
  }
}

/// Backward of gated_norm_forward from grad_out (M, E): grad_y (M, E) overwritten, grad_z (row
/// stride ld_gz) overwritten, grad_weight (E) += when given, summed over rows in order by
/// threads that own blocks of channels. `normalized` (M, E) receives the normalised values
/// before the weight, y * silu(z) * rsqrt(mean + eps).
template <class T>
void gated_norm_backward(const T* y, const T* z, std::int64_t ld_z, const T* weight, const T* grad_out, T* grad_y,
                         T* grad_z, std::int64_t ld_gz, T* grad_weight, T* normalized, std::int64_t rows,
                         std::int64_t d_inner, std::int64_t groups, double eps, int n_threads) {
  const std::int64_t size = d_inner / groups;
#pragma omp parallel num_threads(n_threads)
  {
#pragma omp for schedule(static)
    for (std::int64_t m = 0; m < rows; ++m) {
      for (std::int64_t g = 0; g < groups; ++g) {
        const std::int64_t e0 = g * size;
        const T* yr = y + m * d_inner + e0;
        const T* zr = z + m * ld_z + e0;
        const T* go = grad_out + m * d_inner + e0;
        T* gy = grad_y + m * d_inner + e0;
        T* gz = grad_z + m * ld_gz + e0;
        T* n = normalized + m * d_inner + e0;
        T sum = 0, dot = 0;
        for (std::int64_t i = 0; i < size; ++i) {
          const T gated = yr[i] * zr[i] * sigmoid(zr[i]);
          sum += gated * gated;
          dot += go[i] * weight[e0 + i] * gated;
        }
        const T r = T(1) / std::sqrt(sum / T(size) + T(eps));
        const T correction = r * r * r * dot / T(size);
        for (std::int64_t i = 0; i < size; ++i) {
          const T s = sigmoid(zr[i]);
          const T gate = zr[i] * s;
          const T gated = yr[i] * gate;
          n[i] = gated * r;
          const T d_gated = r * go[i] * weight[e0 + i] - gated * correction;
          gy[i] = d_gated * gate;
          gz[i] = d_gated * yr[i] * s * (T(1) + zr[i] * (T(1) - s));
        }
      }
    }
    if (grad_weight != nullptr) {
      constexpr std::int64_t kBlock = 64;
#pragma omp for schedule(static)
      for (std::int64_t e0 = 0; e0 < d_inner; e0 += kBlock) {
        const std::int64_t e1 = std::min(d_inner, e0 + kBlock);
        for (std::int64_t m = 0; m < rows; ++m) {
          for (std::int64_t e = e0; e < e1; ++e) grad_weight[e] += grad_out[m * d_inner + e] * normalized[m * d_inner + e];
        }
      }
    }
  }
}

}  // namespace mambakit::mixer_mamba2
