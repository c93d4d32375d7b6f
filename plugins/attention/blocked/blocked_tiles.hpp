#pragma once
// The building blocks of attention/blocked: block sizes, 64-byte aligned scratch, packing of
// query rows into zero-padded blocks (rows or transposed), and one register-tiled product
// (sdk/util/panel_product.hpp), four output rows at a time:
//   C (4 x w) (+)= A (4 x depth) B (depth x w)
// A is read one scalar at a time (a broadcast), so it may be any strided view, a cache's rows
// or a block stored transposed; B's rows are whole vectors (a packed block, or cache rows when
// hd is a whole number of vectors).
// The blocks use it as
//   scores     S^T (keys x queries) = K (keys x hd) Q^T (hd x queries)
//   weighted   O (queries x hd) += P (queries x keys) V (keys x hd)
// and backward likewise, so that neither K nor V is ever transposed.
//
// Dimensions: Bq query block (4 vectors: 64 f32, 32 f64), Bk key block, hd head_dim, hdp hd
// rounded up to a vector.

#include <algorithm>
#include <cstdint>
#include <memory>
#include <new>
#include <utility>

#include "attention_common.hpp"
#include "mambakit/sdk/util/panel_product.hpp"
#include "mambakit/sdk/util/simd.hpp"

namespace mambakit::attention_blocked {

namespace simd = sdk::simd;
using attention_common::Dims;
using attention_common::Rows;

/// Rows of a tile.
inline constexpr std::int64_t kTileRows = 4;
/// Keys per block.
inline constexpr std::int64_t kKeyBlock = 64;
/// Queries per block: four vectors.
template <class T>
inline constexpr std::int64_t kQueryBlock = 4 * simd::kWidth<T>;

/// hd rounded up to a whole number of vectors.
template <class T>
std::int64_t padded_head_dim(std::int64_t hd) {
  constexpr std::int64_t kWidth = simd::kWidth<T>;
  return (hd + kWidth - 1) / kWidth * kWidth;
}

/// What one task of a loop over the B * H * blocks (row, head, query block) triples works on:
/// row b (at position p), query head h reading kv head kv, and query block `block`, the queries
/// i0 .. i0 + rows - 1.
struct QueryBlockTask {
  std::int64_t b, h, kv, p, block, i0, rows;
};

/// Task `task` of such a loop over the `blocks` query blocks of each (row, head): the latest
/// blocks first, since they see the most keys (a dynamic schedule then starts the longest tasks
/// first).
template <class T>
QueryBlockTask query_block_task(const Dims& d, const sdk::AttentionForwardArgs& args, std::int64_t blocks,
                                std::int64_t task) {
  constexpr std::int64_t kBq = kQueryBlock<T>;
  const std::int64_t block = blocks - 1 - task / (d.B * d.H), bh = task % (d.B * d.H);
  const std::int64_t b = bh / d.H, h = bh % d.H, i0 = block * kBq;
  return {b, h, d.kv_head(h), attention_common::position(args, b), block, i0, std::min(kBq, d.L - i0)};
}

/// n rounded up to a multiple of kTileRows.
inline std::int64_t tile_rows(std::int64_t n) { return (n + kTileRows - 1) / kTileRows * kTileRows; }

/// A thread's scratch block of `count` elements, 64-byte aligned (an unaligned vector load that
/// straddles two cache lines costs two: measured, the score products ran at half speed).
template <class T>
class Block {
 public:
  explicit Block(std::int64_t count)
      : data_(static_cast<T*>(::operator new(static_cast<std::size_t>(std::max<std::int64_t>(count, 1)) * sizeof(T),
                                             std::align_val_t(64)))) {}
  [[nodiscard]] T* data() const { return data_.get(); }
  T& operator[](std::int64_t i) const { return data_.get()[i]; }

 private:
  struct Free {
    void operator()(T* p) const { ::operator delete(p, std::align_val_t(64)); }
  };
  std::unique_ptr<T, Free> data_;
};

/// dst (padded_rows x hdp) = factor * rows [t0, t0 + rows) of head x of `src` at batch b, zero
/// past hd and past `rows`.
template <class T>
void pack_rows(T* dst, std::int64_t hdp, const Rows<const T>& src, std::int64_t b, std::int64_t t0,
               std::int64_t x, std::int64_t rows, std::int64_t padded_rows, T factor) {
  const std::int64_t hd = src.head_dim;
  for (std::int64_t r = 0; r < padded_rows; ++r) {
    T* out = dst + r * hdp;
    if (r < rows) {
      const T* in = src.at(b, t0 + r, x);
      for (std::int64_t e = 0; e < hd; ++e) out[e] = factor * in[e];
      std::fill(out + hd, out + hdp, T(0));
    } else {
      std::fill(out, out + hdp, T(0));
    }
  }
}

/// dst (hd x Bq) = factor * the transpose of rows [t0, t0 + rows) of head x of `src` at batch
/// b, zero in the columns past `rows`.
template <class T>
void pack_transposed(T* dst, const Rows<const T>& src, std::int64_t b, std::int64_t t0, std::int64_t x,
                     std::int64_t rows, T factor) {
  constexpr std::int64_t kBq = kQueryBlock<T>;
  const std::int64_t hd = src.head_dim;
  if (rows < kBq) {
    for (std::int64_t e = 0; e < hd; ++e) std::fill(dst + e * kBq + rows, dst + (e + 1) * kBq, T(0));
  }
  for (std::int64_t r = 0; r < rows; ++r) {
    const T* in = src.at(b, t0 + r, x);
    for (std::int64_t e = 0; e < hd; ++e) dst[e * kBq + r] = factor * in[e];
  }
}

/// Cache rows [t0, t0 + 4) of head x at batch b as product_tile's A operand: where they are
/// (rows `stride` apart), or, when they run past the `available` rows, copied into `scratch`
/// (4 x hd) with zeros after them, so that nothing unheld is read.
template <class T>
std::pair<const T*, std::int64_t> tile_operand(const Rows<const T>& src, std::int64_t b, std::int64_t t0,
                                               std::int64_t x, std::int64_t available, T* scratch) {
  if (t0 + kTileRows <= available) return {src.at(b, t0, x), src.stride()};
  pack_rows(scratch, src.head_dim, src, b, t0, x, available - t0, kTileRows, T(1));
  return {scratch, src.head_dim};
}

/// c (4 x width; row stride ldc) = or += a (4 x depth; a(r, j) = a[r * a_row + j * a_col])
/// b (depth x width; rows ldb apart), width a whole number of vectors: one row of tiles of
/// sdk/util/panel_product.hpp.
template <class T>
inline void product_tile(const T* a, std::int64_t a_row, std::int64_t a_col, std::int64_t depth, const T* b,
                         std::int64_t ldb, std::int64_t width, T* c, std::int64_t ldc, bool accumulate) {
  sdk::util::panel_product<T>(kTileRows, width, depth, {a, a_row, a_col}, b, ldb,
                              {c, ldc, T(1), nullptr, /*overwrite=*/!accumulate});
}

/// The largest lane of v.
template <class T>
inline T hmax(simd::Vec<T> v) {
  T largest = v[0];
  for (int i = 1; i < simd::kWidth<T>; ++i) largest = std::max<T>(largest, v[i]);
  return largest;
}

/// Element-wise maximum.
template <class T>
inline simd::Vec<T> vmax(simd::Vec<T> a, simd::Vec<T> b) {
  return a > b ? a : b;
}

}  // namespace mambakit::attention_blocked
