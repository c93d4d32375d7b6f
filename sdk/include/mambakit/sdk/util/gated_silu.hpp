#pragma once
// The SiLU-gated product of a gated MLP (the official GatedMLP, and the MLP inside the official
// MHA), elementwise over rows whose first half is the value a and second half the gate g:
//   u = a * silu(g),   silu(g) = g * sigmoid(g)
// and its backward, with silu'(g) = s (1 + g (1 - s)), s = sigmoid(g):
//   grad_a = grad_u * silu(g),   grad_g = grad_u * a * silu'(g)
// In parallel over rows with OpenMP; each element is independent, so the result does not
// depend on the thread count.
//
// Templated on the element type T (float, or double).
//
// Dimensions: M rows, F width of u (the rows of a | g hold 2F).

#include <cmath>
#include <cstdint>

namespace mambakit::sdk::util {

/// u (M, F; row stride ld_u) = a * silu(g), with a = h[:, 0:F] and g = h[:, F:2F] of
/// h (M, 2F; row stride ld_h). `n_threads` < 1 runs one thread.
template <class T>
void gated_silu_forward(const T* h, std::int64_t ld_h, T* u, std::int64_t ld_u, std::int64_t rows,
                        std::int64_t width, int n_threads) {
#pragma omp parallel for num_threads(n_threads > 0 ? n_threads : 1) schedule(static) if (rows > 1)
  for (std::int64_t m = 0; m < rows; ++m) {
    const T* a = h + m * ld_h;
    const T* g = a + width;
    T* out = u + m * ld_u;
    for (std::int64_t j = 0; j < width; ++j) out[j] = a[j] * g[j] / (T(1) + std::exp(-g[j]));
  }
}

/// Backward of gated_silu_forward: grad_h (M, 2F; row stride ld_grad_h) = [grad_a | grad_g],
/// overwritten (not accumulated), from grad_u (M, F; row stride ld_grad_u) and the forward's
/// h (M, 2F; row stride ld_h).
template <class T>
void gated_silu_backward(const T* h, std::int64_t ld_h, const T* grad_u, std::int64_t ld_grad_u, T* grad_h,
                         std::int64_t ld_grad_h, std::int64_t rows, std::int64_t width, int n_threads) {
#pragma omp parallel for num_threads(n_threads > 0 ? n_threads : 1) schedule(static) if (rows > 1)
  for (std::int64_t m = 0; m < rows; ++m) {
    const T* a = h + m * ld_h;
    const T* g = a + width;
    const T* gu = grad_u + m * ld_grad_u;
    T* grad_a = grad_h + m * ld_grad_h;
    T* grad_g = grad_a + width;
    for (std::int64_t j = 0; j < width; ++j) {
      const T s = T(1) / (T(1) + std::exp(-g[j]));
      grad_a[j] = gu[j] * g[j] * s;
      grad_g[j] = gu[j] * a[j] * s * (T(1) + g[j] * (T(1) - s));
    }
  }
}

}  // namespace mambakit::sdk::util
