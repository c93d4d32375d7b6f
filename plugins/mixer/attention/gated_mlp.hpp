#pragma once
// The official MHA's parallel gated MLP (mlp_dim > 0): in_proj's last U columns split into
// up | gate (U/2 each), and up * silu(gate) joins the attention context as out_proj's input.
//
// Dimensions: M rows, N = U / 2.

#include <cmath>
#include <cstdint>

namespace mambakit::mixer_attention {

/// out (M, N; row stride ld_out) = up * silu(gate), with up = in[:, 0:N] and gate = in[:, N:2N]
/// (row stride ld_in).
template <class T>
void gated_mlp_forward(const T* in, std::int64_t ld_in, T* out, std::int64_t ld_out, std::int64_t rows,
                       std::int64_t width, int n_threads) {
#pragma omp parallel for num_threads(n_threads) schedule(static)
  for (std::int64_t m = 0; m < rows; ++m) {
    const T* up = in + m * ld_in;
    const T* gate = up + width;
    T* o = out + m * ld_out;
    for (std::int64_t j = 0; j < width; ++j) o[j] = up[j] * gate[j] / (T(1) + std::exp(-gate[j]));
  }
}

/// Backward of gated_mlp_forward from grad_out (row stride ld_grad_out): the up and gate
/// columns of grad_in (row stride ld_grad_in) are overwritten.
template <class T>
void gated_mlp_backward(const T* in, std::int64_t ld_in, const T* grad_out, std::int64_t ld_grad_out, T* grad_in,
                        std::int64_t ld_grad_in, std::int64_t rows, std::int64_t width, int n_threads) {
#pragma omp parallel for num_threads(n_threads) schedule(static)
  for (std::int64_t m = 0; m < rows; ++m) {
    const T* up = in + m * ld_in;
    const T* gate = up + width;
    const T* g = grad_out + m * ld_grad_out;
    T* g_up = grad_in + m * ld_grad_in;
    T* g_gate = g_up + width;
    for (std::int64_t j = 0; j < width; ++j) {
      const T s = T(1) / (T(1) + std::exp(-gate[j]));
      g_up[j] = g[j] * gate[j] * s;
      g_gate[j] = g[j] * up[j] * s * (T(1) + gate[j] * (T(1) - s));
    }
  }
}

}  // namespace mambakit::mixer_attention
