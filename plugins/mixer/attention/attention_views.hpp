#pragma once
// What the attention mixer's forward, backward and step share: each row's position, views of
// the heads in a wider buffer for the attention kernel, and the copies between the key/value
// caches (B, C, Hkv, hd) and the k | v columns of qkv rows.
//
// Dimensions: B batch, L length, H heads, Hkv key/value heads, hd head_dim, C cache capacity.

#include <algorithm>
#include <cinttypes>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "mambakit/sdk/tensor_view.hpp"
#include "mambakit/sdk/util/typed_params.hpp"

namespace mambakit::mixer_attention {

/// Each row's position p_b from a call's `positions` (B) i64 view: zeros when it is absent or
/// when the call has no state (`with_state` false; positions other than 0 are then an error).
inline std::vector<std::int64_t> row_positions(const sdk::TensorView& positions, std::int64_t batch,
                                               bool with_state, const char* call) {
  std::vector<std::int64_t> rows(static_cast<std::size_t>(batch), 0);
  if (!positions.present()) return rows;
  if (positions.dtype != sdk::DType::kI64 || positions.rank != 1 || positions.shape[0] != batch) {
    throw std::invalid_argument(std::string("mixer/attention ") + call + ": positions must be a (" +
                                std::to_string(batch) + ") i64 tensor");
  }
  for (std::int64_t b = 0; b < batch; ++b) {
    const std::int64_t p = positions.as<const std::int64_t>()[b * positions.strides[0]];
    if (p < 0 || (!with_state && p != 0)) {
      throw std::invalid_argument(std::string("mixer/attention ") + call + ": row " + std::to_string(b) +
                                  " is at position " + std::to_string(p) +
                                  (with_state ? "" : " without an initial state (it must be 0)"));
    }
    rows[static_cast<std::size_t>(b)] = p;
  }
  return rows;
}

/// Throws unless every row's p_b + length fits a cache of `capacity` tokens.
inline void check_capacity(const std::vector<std::int64_t>& positions, std::int64_t length, std::int64_t capacity,
                           const char* which) {
  for (std::size_t b = 0; b < positions.size(); ++b) {
    if (positions[b] + length > capacity) {
      throw std::invalid_argument("mixer/attention: row " + std::to_string(b) + " holds " +
                                  std::to_string(positions[b]) + " tokens and takes " + std::to_string(length) +
                                  " more, but the " + which + " has room for " + std::to_string(capacity));
    }
  }
}

/// A (batch, length, heads, hd) view of `data` whose (batch, length) rows are `row_stride` apart.
template <class T>
sdk::TensorView heads_view(const T* data, std::int64_t batch, std::int64_t length, std::int64_t heads,
                           std::int64_t head_dim, std::int64_t row_stride) {
  sdk::TensorView view = sdk::make_view(const_cast<T*>(data), sdk::util::dtype_of<T>(), sdk::Device{},
                                        {batch, length, heads, head_dim});
  view.strides[1] = row_stride;
  view.strides[0] = length * row_stride;
  return view;
}

/// A (B) i64 view of `positions`.
inline sdk::TensorView positions_view(std::vector<std::int64_t>& positions) {
  return sdk::make_view(positions.data(), sdk::DType::kI64, sdk::Device{},
                        {static_cast<std::int64_t>(positions.size())});
}

/// cache (B, capacity, W) row b = the held entries [0, p_b) of `held` (B, held_capacity, W; null
/// when nothing is held), then the L new ones, columns [offset, offset + W) of the rows (B, L;
/// row stride ld) of `rows`. W = Hkv * hd.
template <class T>
void fill_cache(T* cache, std::int64_t capacity, const T* held, std::int64_t held_capacity, const T* rows,
                std::int64_t ld, std::int64_t offset, const std::vector<std::int64_t>& positions, std::int64_t length,
                std::int64_t width) {
  for (std::size_t b = 0; b < positions.size(); ++b) {
    const std::int64_t p = positions[b], batch = static_cast<std::int64_t>(b);
    T* row = cache + batch * capacity * width;
    if (held != nullptr && held != cache) std::copy_n(held + batch * held_capacity * width, p * width, row);
    for (std::int64_t t = 0; t < length; ++t) {
      std::copy_n(rows + (batch * length + t) * ld + offset, width, row + (p + t) * width);
    }
  }
}

/// The reverse of fill_cache for gradients: the entries [0, p_b) of `grad` (B, capacity, W)
/// are added to `grad_held` (B, held_capacity, W; skipped when null), the new ones [p_b, p_b + L)
/// to columns [offset, offset + W) of `grad_rows` (B, L; row stride ld).
template <class T>
void scatter_cache_gradient(const T* grad, std::int64_t capacity, T* grad_held, std::int64_t held_capacity,
                            T* grad_rows, std::int64_t ld, std::int64_t offset,
                            const std::vector<std::int64_t>& positions, std::int64_t length, std::int64_t width) {
  for (std::size_t b = 0; b < positions.size(); ++b) {
    const std::int64_t p = positions[b], batch = static_cast<std::int64_t>(b);
    const T* row = grad + batch * capacity * width;
    if (grad_held != nullptr) {
      T* held = grad_held + batch * held_capacity * width;
      for (std::int64_t i = 0; i < p * width; ++i) held[i] += row[i];
    }
    for (std::int64_t t = 0; t < length; ++t) {
      T* target = grad_rows + (batch * length + t) * ld + offset;
      const T* source = row + (p + t) * width;
      for (std::int64_t i = 0; i < width; ++i) target[i] += source[i];
    }
  }
}

}  // namespace mambakit::mixer_attention
