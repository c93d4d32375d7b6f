#pragma once
// The framework's own layers: embedding lookup, RMSNorm and the residual add. Templated on the
// element type T, instantiated for float (what models run in) and double (gradient checks).
//
// Dimensions: M rows (batch x length), D d_model, V vocabulary rows.

#include <cstdint>

#include "mambakit/sdk/tensor_view.hpp"

namespace mambakit::model {

/// out (M, D) = table[ids[m]] with table (V, D). Ids must already be checked.
template <class T>
void embedding_lookup(const std::int32_t* ids, const T* table, T* out, std::int64_t rows, std::int64_t d_model,
                      int n_threads);

/// The same lookup from a table held as f32, f16 or bf16 (rows widened to f32).
void embedding_lookup(const std::int32_t* ids, const sdk::TensorView& table, float* out, std::int64_t rows,
                      std::int64_t d_model, int n_threads);

/// out (M, D) = x * rsqrt(mean(x^2) + eps) * weight (D).
template <class T>
void rms_norm(const T* x, const T* weight, T* out, std::int64_t rows, std::int64_t d_model, double eps,
              int n_threads);

/// Backward of rms_norm(): grad_x (M, D) += d/dx, grad_weight (D) += d/dweight, given the
/// forward input x and grad_out (M, D).
template <class T>
void rms_norm_backward(const T* x, const T* weight, const T* grad_out, T* grad_x, T* grad_weight,
                       std::int64_t rows, std::int64_t d_model, double eps, int n_threads);

/// out (M, D) = (x - mean(x)) * rsqrt(var(x) + eps) * weight (D) + bias (D), per row (LayerNorm).
template <class T>
void layer_norm(const T* x, const T* weight, const T* bias, T* out, std::int64_t rows, std::int64_t d_model,
                double eps, int n_threads);

/// Backward of layer_norm(): grad_x (M, D) += d/dx, grad_weight and grad_bias (D) +=, given
/// the forward input x and grad_out (M, D).
template <class T>
void layer_norm_backward(const T* x, const T* weight, const T* grad_out, T* grad_x, T* grad_weight, T* grad_bias,
                         std::int64_t rows, std::int64_t d_model, double eps, int n_threads);

/// grad_table[ids[m]] (V, D) += grad_out[m] (M, D).
template <class T>
void embedding_backward(const std::int32_t* ids, const T* grad_out, T* grad_table, std::int64_t rows,
                        std::int64_t d_model);

/// x (M, D) += y (M, D).
void add_in_place(float* x, const float* y, std::int64_t count, int n_threads);

}  // namespace mambakit::model
