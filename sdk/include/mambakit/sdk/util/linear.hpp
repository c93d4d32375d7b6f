#pragma once
// Dense projections for CPU plugins, on Eigen's GEMM: y = x W^T (+ bias), the layout of
// PyTorch's nn.Linear and of Hugging Face checkpoints (W is (out, in), row-major), and their
// backward products (gradients accumulate, +=, unless a function says otherwise).
//
// Templated on the element type T (float, or double for double-precision runs). The decode
// path's few-rows product, which also takes f16/bf16 weights, is in few_rows.hpp.
//
// The threads split a product's output into tiles whose size depends on the output's shape
// only, each tile one single-threaded Eigen product, so that the result does not depend on the
// thread count. (Eigen's own parallel GEMM blocks the inner dimension differently with one
// thread and with several, and so rounds differently once that dimension is longer than a
// block, a few hundred here: always in the products of the parameters' gradients, whose inner
// dimension is M.)
//
// Dimensions: M rows (batch x length), K in features, N out features.

#include <Eigen/Core>
#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "mambakit/sdk/util/int8_rows.hpp"
#include "mambakit/sdk/util/typed_params.hpp"

namespace mambakit::sdk::util {

template <class T>
using RowMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using ConstMatrixMap = Eigen::Map<const RowMatrix<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <class T>
using MatrixMap = Eigen::Map<RowMatrix<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <class T>
using RowVector = Eigen::Matrix<T, 1, Eigen::Dynamic>;

namespace linear_detail {

/// The threads the products below use on the calling thread (set_gemm_threads()).
inline int& thread_count() {
  thread_local int count = 1;
  return count;
}

/// Fewer tiles than this make the tiles narrower (to spread small products over the threads).
inline constexpr std::int64_t kMinTiles = 16;

/// How a rows x cols output is cut: tiles of up to 256 rows, and columns in multiples of 64,
/// narrowed until there are kMinTiles tiles (or 64 columns). Depends on the shape only.
struct TileShape {
  std::int64_t rows = 0, cols = 0;
};
inline TileShape tile_shape(std::int64_t rows, std::int64_t cols) {
  const std::int64_t tile_rows = std::max<std::int64_t>(1, std::min<std::int64_t>(rows, 256));
  const std::int64_t row_tiles = (rows + tile_rows - 1) / tile_rows;
  const std::int64_t col_tiles = std::max<std::int64_t>(1, (kMinTiles + row_tiles - 1) / row_tiles);
  const std::int64_t tile_cols = ((cols + col_tiles - 1) / col_tiles + 63) / 64 * 64;
  return {tile_rows, std::max<std::int64_t>(1, std::min(cols, tile_cols))};
}

/// body(r0, rows_in_tile, c0, cols_in_tile) for each tile of a rows x cols output, on up to
/// `threads` threads.
template <class Body>
void for_each_tile(std::int64_t rows, std::int64_t cols, int threads, Body&& body) {
  if (rows <= 0 || cols <= 0) return;
  const TileShape shape = tile_shape(rows, cols);
  const std::int64_t across = (cols + shape.cols - 1) / shape.cols;
  const std::int64_t tiles = (rows + shape.rows - 1) / shape.rows * across;
  const auto tile = [&](std::int64_t t) {
    const std::int64_t r0 = t / across * shape.rows, c0 = t % across * shape.cols;
    body(r0, std::min(shape.rows, rows - r0), c0, std::min(shape.cols, cols - c0));
  };
  if (threads <= 1 || tiles <= 1) {
    for (std::int64_t t = 0; t < tiles; ++t) tile(t);
    return;
  }
#pragma omp parallel for num_threads(static_cast<int>(std::min<std::int64_t>(threads, tiles))) schedule(static)
  for (std::int64_t t = 0; t < tiles; ++t) tile(t);
}

/// Eigen's single-threaded GEMM blocking with packing buffers that belong to the calling thread
/// and are kept between products: Eigen would allocate and free them for every product, which
/// for every tile churned the heap (glibc returned the memory and page-faulted it back).
template <class T>
class ThreadBlocking final : public Eigen::internal::gemm_blocking_space<Eigen::RowMajor, T, T, Eigen::Dynamic,
                                                                           Eigen::Dynamic, Eigen::Dynamic, 1, false> {
  using Base = Eigen::internal::gemm_blocking_space<Eigen::RowMajor, T, T, Eigen::Dynamic, Eigen::Dynamic,
                                                    Eigen::Dynamic, 1, false>;

 public:
  ThreadBlocking(Eigen::Index rows, Eigen::Index cols, Eigen::Index depth) : Base(rows, cols, depth, 1, true) {
    thread_local std::vector<T, Eigen::aligned_allocator<T>> block_a, block_b;
    const auto size_a = static_cast<std::size_t>(this->m_mc * this->m_kc);
    const auto size_b = static_cast<std::size_t>(this->m_kc * this->m_nc);
    if (block_a.size() < size_a) block_a.resize(size_a);
    if (block_b.size() < size_b) block_b.resize(size_b);
    this->m_blockA = block_a.data();
    this->m_blockB = block_b.data();
  }
  ~ThreadBlocking() {
    this->m_blockA = nullptr;  // the buffers stay with the thread; the base frees only its own
    this->m_blockB = nullptr;
  }
  ThreadBlocking(const ThreadBlocking&) = delete;
  ThreadBlocking& operator=(const ThreadBlocking&) = delete;
};

/// c (rows, cols; row-major, row stride ldc) += a (rows, depth) b (depth, cols), on the calling
/// thread. AOrder and BOrder are a's and b's storage orders (Eigen::RowMajor or ColMajor), lda
/// and ldb their outer strides.
template <int AOrder, int BOrder, class T>
void gemm_tile(std::int64_t rows, std::int64_t cols, std::int64_t depth, const T* a, std::int64_t lda, const T* b,
               std::int64_t ldb, T* c, std::int64_t ldc) {
  if (depth <= 0) return;
  ThreadBlocking<T> blocking(rows, cols, depth);
  Eigen::internal::general_matrix_matrix_product<Eigen::Index, T, AOrder, false, T, BOrder, false, Eigen::RowMajor,
                                                 1>::run(rows, cols, depth, a, lda, b, ldb, c, 1, ldc, T(1), blocking,
                                                         nullptr);
}

/// Zeroes a (rows, cols) block of row stride ld.
template <class T>
void zero_tile(T* c, std::int64_t ld, std::int64_t rows, std::int64_t cols) {
  for (std::int64_t r = 0; r < rows; ++r) std::fill(c + r * ld, c + r * ld + cols, T(0));
}

}  // namespace linear_detail

/// Uses `n_threads` threads for the products below that the calling thread runs next (Eigen's
/// own GEMM threads stay off: the products split their work themselves).
inline void set_gemm_threads(int n_threads) {
  Eigen::setNbThreads(1);
  linear_detail::thread_count() = n_threads > 0 ? n_threads : 1;
}

namespace linear_detail {

/// linear_forward() below on `threads` threads.
template <class T>
void forward(int threads, const T* x, std::int64_t ldx, const T* weight, const T* bias, T* y, std::int64_t ldy,
             std::int64_t m, std::int64_t k, std::int64_t n, bool accumulate) {
  for_each_tile(m, n, threads, [&](std::int64_t r0, std::int64_t rows, std::int64_t c0, std::int64_t cols) {
    T* tile = y + r0 * ldy + c0;
    if (!accumulate) zero_tile(tile, ldy, rows, cols);
    // W^T (K, N) is W (N, K) read column-major.
    gemm_tile<Eigen::RowMajor, Eigen::ColMajor>(rows, cols, k, x + r0 * ldx, ldx, weight + c0 * k, k, tile, ldy);
    if (bias != nullptr) {
      for (std::int64_t r = 0; r < rows; ++r) {
        for (std::int64_t c = 0; c < cols; ++c) tile[r * ldy + c] += bias[c0 + c];
      }
    }
  });
}

}  // namespace linear_detail

/// y (M, N; row stride ldy) = x (M, K; row stride ldx) W^T, W (N, K), + bias (N) when given.
/// `accumulate` adds to y instead of overwriting it.
template <class T>
void linear_forward(const T* x, std::int64_t ldx, const T* weight, const std::type_identity_t<T>* bias, T* y,
                           std::int64_t ldy, std::int64_t m, std::int64_t k, std::int64_t n, bool accumulate = false) {
  linear_detail::forward<T>(linear_detail::thread_count(), x, ldx, weight, bias, y, ldy, m, k, n, accumulate);
}

/// linear_forward with W as TypedParams::linear() gives it, on `n_threads` threads: an int8 W
/// (kQ8) through linear_int8_forward (int8_rows.hpp: the rows quantized per group, int32 sums;
/// faster than widening W into the f32 GEMM), any other through the GEMM above.
template <class T>
void linear_forward(int n_threads, const T* x, std::int64_t ldx, const LinearWeight<T>& weight,
                    const std::type_identity_t<T>* bias, T* y, std::int64_t ldy, std::int64_t m, std::int64_t k,
                    std::int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    if (weight.int8 != nullptr) return linear_int8_forward(x, ldx, *weight.int8, bias, y, ldy, m, n_threads);
  }
  linear_detail::forward<T>(n_threads, x, ldx, weight.values, bias, y, ldy, m, k, n, false);
}

/// Backward of linear_forward with respect to its input:
/// grad_x (M, K; row stride ldgx) += grad_y (M, N; row stride ldgy) W, W (N, K).
/// `accumulate` false overwrites grad_x instead.
template <class T>
void linear_backward_input(const T* grad_y, std::int64_t ldgy, const T* weight, T* grad_x,
                                  std::int64_t ldgx, std::int64_t m, std::int64_t k, std::int64_t n,
                                  bool accumulate = true) {
  linear_detail::for_each_tile(m, k, linear_detail::thread_count(), [&](std::int64_t r0, std::int64_t rows,
                                                                       std::int64_t c0, std::int64_t cols) {
    T* tile = grad_x + r0 * ldgx + c0;
    if (!accumulate) linear_detail::zero_tile(tile, ldgx, rows, cols);
    linear_detail::gemm_tile<Eigen::RowMajor, Eigen::RowMajor>(rows, cols, n, grad_y + r0 * ldgy, ldgy, weight + c0, k,
                                                               tile, ldgx);
  });
}

/// Backward of linear_forward with respect to its parameters, accumulating (+=):
/// grad_weight (N, K) += grad_y^T (N, M) x (M, K) and grad_bias (N) += the column sums of
/// grad_y (M, N). grad_y and x have row strides ldgy and ldx; a null grad_weight or grad_bias
/// is skipped (a frozen parameter).
template <class T>
void linear_backward_params(const T* grad_y, std::int64_t ldgy, const T* x, std::int64_t ldx,
                                   std::type_identity_t<T>* grad_weight,
                            std::type_identity_t<T>* grad_bias, std::int64_t m, std::int64_t k,
                                   std::int64_t n) {
  if (grad_weight != nullptr) {
    // grad_y^T (N, M) is grad_y (M, N) read column-major.
    linear_detail::for_each_tile(n, k, linear_detail::thread_count(), [&](std::int64_t r0, std::int64_t rows,
                                                                         std::int64_t c0, std::int64_t cols) {
      linear_detail::gemm_tile<Eigen::ColMajor, Eigen::RowMajor>(rows, cols, m, grad_y + r0, ldgy, x + c0, ldx,
                                                                 grad_weight + r0 * k + c0, k);
    });
  }
  if (grad_bias != nullptr) {
    // Each column summed over the rows in order: Eigen's colwise().sum() vectorises the sum in
    // an order that depends on the buffer's alignment, and so its bits on the allocation.
    std::vector<T> sums(static_cast<std::size_t>(n), T(0));
    for (std::int64_t r = 0; r < m; ++r) {
      const T* row = grad_y + r * ldgy;
      for (std::int64_t j = 0; j < n; ++j) sums[static_cast<std::size_t>(j)] += row[j];
    }
    for (std::int64_t j = 0; j < n; ++j) grad_bias[j] += sums[static_cast<std::size_t>(j)];
  }
}

}  // namespace mambakit::sdk::util
