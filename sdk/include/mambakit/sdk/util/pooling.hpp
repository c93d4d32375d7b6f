#pragma once
// Pooling a sequence's hidden states into one vector per row, over each row's valid tokens.
//
// Templated on the element type T (float, or double).
//
// Dimensions: B batch, L length, D d_model.

#include <algorithm>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>

#include "mambakit/sdk/tensor_view.hpp"

namespace mambakit::sdk::util {

enum class Pooling { kLast, kMean, kMax, kNone };

inline Pooling parse_pooling(const std::string& name, const std::string& component) {
  if (name == "last") return Pooling::kLast;
  if (name == "mean") return Pooling::kMean;
  if (name == "max") return Pooling::kMax;
  if (name == "none") return Pooling::kNone;
  throw std::invalid_argument(component + ": \"pooling\" = \"" + name + "\" is invalid: must be last, mean, max or none");
}

/// Valid tokens of row b: lengths[b] when `lengths` (B, i32) is present, else L; clamped to [1, L].
inline std::int64_t valid_length(const sdk::TensorView& lengths, std::int64_t b, std::int64_t length) {
  if (!lengths.present()) return length;
  return std::clamp<std::int64_t>(lengths.as<const std::int32_t>()[b * lengths.strides[0]], 1, length);
}

/// pooled (B, D) from hidden (B, L, D) with `pooling` (not kNone).
template <class T>
void pool(Pooling pooling, const T* hidden, const sdk::TensorView& lengths, T* pooled,
                 std::int64_t batch, std::int64_t length, std::int64_t d_model) {
  for (std::int64_t b = 0; b < batch; ++b) {
    const std::int64_t valid = valid_length(lengths, b, length);
    T* out = pooled + b * d_model;
    const T* rows = hidden + b * length * d_model;
    if (pooling == Pooling::kLast) {
      std::copy(rows + (valid - 1) * d_model, rows + valid * d_model, out);
      continue;
    }
    std::fill(out, out + d_model, pooling == Pooling::kMax ? -std::numeric_limits<T>::infinity() : T(0));
    for (std::int64_t t = 0; t < valid; ++t) {
      for (std::int64_t d = 0; d < d_model; ++d) {
        const T v = rows[t * d_model + d];
        out[d] = pooling == Pooling::kMax ? std::max(out[d], v) : out[d] + v;
      }
    }
    if (pooling == Pooling::kMean) {
      for (std::int64_t d = 0; d < d_model; ++d) out[d] /= static_cast<T>(valid);
    }
  }
}

/// Backward of pool(), accumulating: grad_hidden (B, L, D) += the gradient that grad_pooled
/// (B, D) sends back through `pooling` (not kNone). Last: to the last valid token; mean: 1/valid
/// to each valid token; max: to the first valid token holding the maximum (the one pool()
/// returns), recomputed from hidden (B, L, D). Padding tokens get nothing.
template <class T>
void pool_backward(Pooling pooling, const T* hidden, const sdk::TensorView& lengths,
                          const T* grad_pooled, T* grad_hidden, std::int64_t batch, std::int64_t length,
                          std::int64_t d_model) {
  for (std::int64_t b = 0; b < batch; ++b) {
    const std::int64_t valid = valid_length(lengths, b, length);
    const T* grad = grad_pooled + b * d_model;
    T* grad_rows = grad_hidden + b * length * d_model;
    if (pooling == Pooling::kLast) {
      T* row = grad_rows + (valid - 1) * d_model;
      for (std::int64_t d = 0; d < d_model; ++d) row[d] += grad[d];
    } else if (pooling == Pooling::kMean) {
      const T scale = T(1) / static_cast<T>(valid);
      for (std::int64_t t = 0; t < valid; ++t) {
        T* row = grad_rows + t * d_model;
        for (std::int64_t d = 0; d < d_model; ++d) row[d] += grad[d] * scale;
      }
    } else {
      const T* rows = hidden + b * length * d_model;
      for (std::int64_t d = 0; d < d_model; ++d) {
        std::int64_t best = 0;
        for (std::int64_t t = 1; t < valid; ++t) {
          if (rows[best * d_model + d] < rows[t * d_model + d]) best = t;
        }
        grad_rows[best * d_model + d] += grad[d];
      }
    }
  }
}

}  // namespace mambakit::sdk::util
