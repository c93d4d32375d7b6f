#pragma once
// Small matrix products for CPU kernels, on register tiles of SIMD vectors (simd.hpp):
//
//   c = c_scale c + diag(row_scale) (a b)          c (rows, cols), a (rows, depth), b (depth, cols)
//   c = diag(row_scale) (a b)                       (`overwrite`)
//
// b and c are row-major with row strides ldb and ldc; a is read element by element with any
// strides (a row-major matrix, or the transpose of one), so neither operand needs a transposed
// copy. For the products of a few dozen rows that ssd/chunked and attention/blocked make per
// chunk or block, Eigen's general product packs both operands every time: on the SSD's shapes
// (64 or 128 rows by 64 columns over a depth of 64 or 128) it ran at 128-142 GFLOP/s on one
// thread of an AMD EPYC (Zen 5) whose FMA peak is about 350, and these tiles at 198-213. A
// tile holds up to 6 rows x 4 vectors of c in registers (24 accumulators), loads b's row once
// per depth step, broadcasts a's elements, and reads no operand twice.
//
// `causal` (c, a square in rows and depth): a is zero above the diagonal (a_ik = 0 for k > i),
// so a tile of rows [i0, i0 + r) stops at depth i0 + r.
//
// Dimensions: rows, cols, depth as above; vectors of simd::kWidth<T> columns.

#include <algorithm>
#include <cstdint>

#include "mambakit/sdk/util/simd.hpp"

namespace mambakit::sdk::util {

/// A matrix read element by element: (i, k) at data[i * row_stride + k * col_stride].
template <class T>
struct StridedOperand {
  const T* data = nullptr;
  std::int64_t row_stride = 0, col_stride = 1;
};

/// The output of a panel product and how it is combined: c = c_scale c + diag(row_scale) (a b),
/// or with `overwrite`, c = diag(row_scale) (a b) without reading c. row_scale == nullptr: all
/// ones.
template <class T>
struct PanelOutput {
  T* data = nullptr;
  std::int64_t ldc = 0;
  T c_scale = 1;
  const T* row_scale = nullptr;
  bool overwrite = false;
};

namespace panel_detail {

inline constexpr int kTileRows = 6;
inline constexpr int kTileVectors = 4;

/// One tile: R rows from i0, V vectors from column j0 (the last with `last_lanes` lanes).
template <class T, int R, int V, bool kFull>
[[gnu::always_inline]] inline void tile(std::int64_t i0, std::int64_t j0, int last_lanes, std::int64_t depth,
                                        const StridedOperand<T>& a, const T* b, std::int64_t ldb,
                                        const PanelOutput<T>& c) {
  namespace simd = sdk::simd;
  using Vec = simd::Vec<T>;
  constexpr int W = simd::kWidth<T>;
  Vec acc[R][V];
  for (int r = 0; r < R; ++r) {
    for (int v = 0; v < V; ++v) acc[r][v] = Vec{};
  }
  const T* a_rows = a.data + i0 * a.row_stride;
  const T* b_cols = b + j0;
  for (std::int64_t k = 0; k < depth; ++k) {
    Vec bv[V];
    for (int v = 0; v < V; ++v) {
      if (kFull || v < V - 1) {
        __builtin_memcpy(&bv[v], b_cols + k * ldb + v * W, sizeof(Vec));
      } else {
        bv[v] = simd::load(b_cols + k * ldb + v * W, last_lanes);
      }
    }
    const T* a_col = a_rows + k * a.col_stride;
    for (int r = 0; r < R; ++r) {
      const Vec av = simd::broadcast(a_col + r * a.row_stride);
      for (int v = 0; v < V; ++v) acc[r][v] += av * bv[v];
    }
  }
  for (int r = 0; r < R; ++r) {
    const T scale = c.row_scale != nullptr ? c.row_scale[i0 + r] : T(1);
    T* c_row = c.data + (i0 + r) * c.ldc + j0;
    for (int v = 0; v < V; ++v) {
      const int lanes = v == V - 1 ? last_lanes : W;
      Vec result = acc[r][v] * scale;
      if (!c.overwrite) result += simd::load(c_row + v * W, lanes) * c.c_scale;
      simd::store(c_row + v * W, result, lanes);
    }
  }
}

/// Tiles of R rows over every column panel of row block i0.
template <class T, int R>
void row_block(std::int64_t i0, std::int64_t cols, std::int64_t depth, const StridedOperand<T>& a, const T* b,
               std::int64_t ldb, const PanelOutput<T>& c) {
  constexpr int W = sdk::simd::kWidth<T>;
  constexpr std::int64_t kPanel = kTileVectors * W;
  for (std::int64_t j0 = 0; j0 < cols; j0 += kPanel) {
    const std::int64_t width = std::min(kPanel, cols - j0);
    const int vectors = static_cast<int>((width + W - 1) / W);
    const int last_lanes = static_cast<int>(width - (vectors - 1) * W);
    if (vectors == 4 && last_lanes == W) {
      tile<T, R, 4, true>(i0, j0, last_lanes, depth, a, b, ldb, c);
      continue;
    }
    switch (vectors) {
      case 4: tile<T, R, 4, false>(i0, j0, last_lanes, depth, a, b, ldb, c); break;
      case 3: tile<T, R, 3, false>(i0, j0, last_lanes, depth, a, b, ldb, c); break;
      case 2: tile<T, R, 2, false>(i0, j0, last_lanes, depth, a, b, ldb, c); break;
      default: tile<T, R, 1, false>(i0, j0, last_lanes, depth, a, b, ldb, c); break;
    }
  }
}

}  // namespace panel_detail

/// c = c_scale c + diag(row_scale) (a b), a (rows, depth), b (depth, cols) row-major with
/// row stride ldb. With `causal`, a is lower triangular (rows == depth) and the zeros above
/// its diagonal are not read.
template <class T>
void panel_product(std::int64_t rows, std::int64_t cols, std::int64_t depth, const StridedOperand<T>& a,
                   const T* b, std::int64_t ldb, const PanelOutput<T>& c, bool causal = false) {
  using namespace panel_detail;
  std::int64_t i0 = 0;
  for (; i0 + kTileRows <= rows; i0 += kTileRows) {
    const std::int64_t tile_depth = causal ? std::min(depth, i0 + kTileRows) : depth;
    row_block<T, kTileRows>(i0, cols, tile_depth, a, b, ldb, c);
  }
  // The last rows: with `causal` they reach i0 + (rows - i0) = depth anyway.
  switch (rows - i0) {
    case 5: row_block<T, 5>(i0, cols, depth, a, b, ldb, c); break;
    case 4: row_block<T, 4>(i0, cols, depth, a, b, ldb, c); break;
    case 3: row_block<T, 3>(i0, cols, depth, a, b, ldb, c); break;
    case 2: row_block<T, 2>(i0, cols, depth, a, b, ldb, c); break;
    case 1: row_block<T, 1>(i0, cols, depth, a, b, ldb, c); break;
    default: break;
  }
}

}  // namespace mambakit::sdk::util
