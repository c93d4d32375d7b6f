#pragma once
// The gate of the gated MLP, elementwise over the rows of fc1's output h = [a | g]:
//   u = a * silu(g),   silu(g) = g * sigmoid(g)
// and its backward, with silu'(g) = s (1 + g (1 - s)), s = sigmoid(g):
//   grad_a = grad_u * silu(g),   grad_g = grad_u * a * silu'(g)
// In parallel over rows with OpenMP; each element is independent, so the result does not
// depend on the thread count.
//
// Dimensions: M rows (batch x length), F hidden.

#include <cmath>
#include <cstdint>

namespace mambakit::mixer_gated_mlp {

template <class T>
T sigmoid(T value) {
  return T(1) / (T(1) + std::exp(-value));
}

/// u (M, F; row stride ldu) = a * silu(g), with a = h[:, :F] and g = h[:, F:2F] of
/// h (M, 2F; row stride ldh).
template <class T>
void gate_forward(const T* h, std::int64_t ldh, T* u, std::int64_t ldu, std::int64_t m, std::int64_t f,
                  int n_threads) {
#pragma omp parallel for num_threads(n_threads > 0 ? n_threads : 1) schedule(static) if (m > 1)
  for (std::int64_t r = 0; r < m; ++r) {
    const T* a = h + r * ldh;
    const T* g = a + f;
    T* out = u + r * ldu;
    for (std::int64_t j = 0; j < f; ++j) out[j] = a[j] * g[j] * sigmoid(g[j]);
  }
}

/// grad_h (M, 2F; row stride ldgh) = [grad_a | grad_g] from grad_u (M, F; row stride ldgu) and
/// h (M, 2F; row stride ldh), overwritten (not accumulated).
template <class T>
void gate_backward(const T* h, std::int64_t ldh, const T* grad_u, std::int64_t ldgu, T* grad_h, std::int64_t ldgh,
                   std::int64_t m, std::int64_t f, int n_threads) {
#pragma omp parallel for num_threads(n_threads > 0 ? n_threads : 1) schedule(static) if (m > 1)
  for (std::int64_t r = 0; r < m; ++r) {
    const T* a = h + r * ldh;
    const T* g = a + f;
    const T* gu = grad_u + r * ldgu;
    T* grad_a = grad_h + r * ldgh;
    T* grad_g = grad_a + f;
    for (std::int64_t j = 0; j < f; ++j) {
      const T s = sigmoid(g[j]);
      grad_a[j] = gu[j] * g[j] * s;
      grad_g[j] = gu[j] * a[j] * s * (T(1) + g[j] * (T(1) - s));
    }
  }
}

}  // namespace mambakit::mixer_gated_mlp
