#pragma once
// The building blocks of attention/blocked: block sizes, 64-byte aligned scratch, packing of
// query rows into zero-padded blocks (rows or transposed), and one register-tiled product on
// 64-byte SIMD vectors (sdk/util/simd.hpp), four output rows at a time:
//   C (4 x w) (+)= A (4 x depth) B (depth x w)
// A is read one scalar at a time (a broadcast), so it may be any strided view, a cache's rows
// or a block stored transposed; B's rows are whole vectors (a packed block, or cache rows when
// hd is a whole number of vectors). 4 rows x 4 vectors make 16 accumulators in registers.
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

/// All lanes equal to *p, by a broadcast load. (sdk::simd::splat(v) is computed as 0 + v,
/// which the compiler must keep for v = -0: a scalar add and a register shuffle per broadcast,
/// measured a third slower in the products below.)
template <class T>
[[gnu::always_inline]] inline simd::Vec<T> broadcast(const T* p) {
#if defined(__AVX512F__)
  if constexpr (sizeof(T) == 4) {
    return _mm512_set1_ps(*p);
  } else {
    return _mm512_set1_pd(*p);
  }
#else
  return simd::splat(*p);
#endif
}

/// c[r][...] (NV vectors per row r < 4; row stride ldc) = or += sum_j a(r, j) b[j][...], j < depth,
/// with a(r, j) = a[r * a_row + j * a_col] and b's rows ldb apart.
template <class T, int NV>
inline void product_vectors(const T* a, std::int64_t a_row, std::int64_t a_col, std::int64_t depth, const T* b,
                            std::int64_t ldb, T* c, std::int64_t ldc, bool accumulate) {
  using V = simd::Vec<T>;
  constexpr int kWidth = simd::kWidth<T>;
  V acc[kTileRows][NV] = {};
  for (std::int64_t j = 0; j < depth; ++j) {
    V bj[NV];
    for (int v = 0; v < NV; ++v) bj[v] = simd::load(b + j * ldb + v * kWidth, kWidth);
    for (int r = 0; r < kTileRows; ++r) {
      const V scalar = broadcast(a + r * a_row + j * a_col);
      for (int v = 0; v < NV; ++v) acc[r][v] += scalar * bj[v];
    }
  }
  for (int r = 0; r < kTileRows; ++r) {
    for (int v = 0; v < NV; ++v) {
      T* out = c + r * ldc + v * kWidth;
      simd::store(out, accumulate ? simd::load(out, kWidth) + acc[r][v] : acc[r][v], kWidth);
    }
  }
}

/// c (4 x width; row stride ldc) = or += a (4 x depth; a(r, j) = a[r * a_row + j * a_col])
/// b (depth x width; rows ldb apart), width a whole number of vectors.
template <class T>
inline void product_tile(const T* a, std::int64_t a_row, std::int64_t a_col, std::int64_t depth, const T* b,
                         std::int64_t ldb, std::int64_t width, T* c, std::int64_t ldc, bool accumulate) {
  constexpr int kWidth = simd::kWidth<T>;
  for (std::int64_t e0 = 0; e0 < width; e0 += 4 * kWidth) {
    switch (std::min<std::int64_t>(4, (width - e0) / kWidth)) {
      case 4: product_vectors<T, 4>(a, a_row, a_col, depth, b + e0, ldb, c + e0, ldc, accumulate); break;
      case 3: product_vectors<T, 3>(a, a_row, a_col, depth, b + e0, ldb, c + e0, ldc, accumulate); break;
      case 2: product_vectors<T, 2>(a, a_row, a_col, depth, b + e0, ldb, c + e0, ldc, accumulate); break;
      default: product_vectors<T, 1>(a, a_row, a_col, depth, b + e0, ldb, c + e0, ldc, accumulate); break;
    }
  }
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
