#pragma once
// The decode path's projection: y = x W^T + bias for a few rows of x (one token per sequence),
// with W in f32, f16 or bf16 and f32 accumulation. Memory-bound: W is streamed once per call,
// so half-precision weights halve the bytes moved.
//
// Every y[m][n] is summed in one fixed order (16 lanes over K, a fixed reduction tree, then the
// tail), whatever the number of rows and threads, so a row's result does not depend on the rows
// computed with it: batched generation equals generating each row alone.
//
// Dimensions: M rows, K in features, N out features.

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>

#include "half_lanes.hpp"

namespace mambakit::plugin_common {

namespace few_rows_detail {

using namespace half_lanes;

inline float scalar(const float* p, std::int64_t i) { return p[i]; }
inline float scalar(const std::uint16_t* p, std::int64_t i, Bf16) { return sdk::bf16_to_f32(p[i]); }
inline float scalar(const std::uint16_t* p, std::int64_t i, F16) { return sdk::f16_to_f32(p[i]); }

/// The sum of the 16 lanes by a fixed tree (halves, quarters, ...).
inline float reduce(Lanes v) {
  HalfLanes h = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7) +
                __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
  float sum = 0.0f;
  for (int i = 0; i < 4; ++i) sum += h[i] + h[i + 4];
  return sum;
}

/// Output features computed together: each weight row of a block is streamed once per call and
/// reused from cache for every input row, with kBlock accumulators in registers and kBlock
/// memory streams in flight.
constexpr int kBlock = 8;
/// How far ahead (bytes) the weight streams are prefetched.
constexpr std::int64_t kPrefetchBytes = 1024;

/// y[r, j] for r < m and j in [j0, j0 + kCount).
template <int kCount, class W, class... Format>
inline void block_of_outputs(const float* x, std::int64_t ldx, const W* weight, const float* bias, float* y,
                             std::int64_t ldy, std::int64_t m, std::int64_t k, std::int64_t j0) {
  const std::int64_t k16 = k - k % 16;
  const W* w = weight + j0 * k;
  for (std::int64_t r = 0; r < m; ++r) {
    const float* row = x + r * ldx;
    Lanes acc[kCount] = {};
    for (std::int64_t i = 0; i < k16; i += 16) {
      if (r == 0) {
        for (int q = 0; q < kCount; ++q) __builtin_prefetch(w + q * k + i + kPrefetchBytes / sizeof(W));
      }
      const Lanes xv = load16(row + i);
      for (int q = 0; q < kCount; ++q) acc[q] += load16(w + q * k + i, Format{}...) * xv;
    }
    for (int q = 0; q < kCount; ++q) {
      float sum = reduce(acc[q]);
      for (std::int64_t i = k16; i < k; ++i) sum += scalar(w + q * k, i, Format{}...) * row[i];
      y[r * ldy + j0 + q] = sum + (bias != nullptr ? bias[j0 + q] : 0.0f);
    }
  }
}

/// Output features [begin, end) on the calling thread.
template <class W, class... Format>
void few_rows_range(const float* x, std::int64_t ldx, const W* weight, const float* bias, float* y, std::int64_t ldy,
                    std::int64_t m, std::int64_t k, std::int64_t begin, std::int64_t end) {
  std::int64_t j = begin;
  for (; j + kBlock <= end; j += kBlock) block_of_outputs<kBlock, W, Format...>(x, ldx, weight, bias, y, ldy, m, k, j);
  for (; j < end; ++j) block_of_outputs<1, W, Format...>(x, ldx, weight, bias, y, ldy, m, k, j);
}

/// Calls `kernel(pointer, Format{}...)` with W's data typed by its dtype.
template <class Kernel>
void with_typed_weights(const sdk::TensorView& weight, Kernel&& kernel) {
  switch (weight.dtype) {
    case sdk::DType::kF32:
      return kernel(weight.as<const float>());
    case sdk::DType::kBF16:
      return kernel(weight.as<const std::uint16_t>(), Bf16{});
    case sdk::DType::kF16:
      return kernel(weight.as<const std::uint16_t>(), F16{});
    default:
      throw std::invalid_argument(std::string("linear_few_rows: weights must be f32, f16 or bf16, not ") +
                                  sdk::dtype_name(weight.dtype));
  }
}

}  // namespace few_rows_detail

/// Output features [begin, end) of `n` for thread `thread` of `threads`: whole blocks of the
/// kernel's block size, as evenly as they divide.
inline std::pair<std::int64_t, std::int64_t> few_rows_share(std::int64_t n, int thread, int threads) {
  constexpr std::int64_t kBlock = few_rows_detail::kBlock;
  const std::int64_t blocks = (n + kBlock - 1) / kBlock;
  return {std::min(blocks * thread / threads * kBlock, n), std::min(blocks * (thread + 1) / threads * kBlock, n)};
}

/// y (M, N; row stride ldy) = x (M, K; row stride ldx) W^T + bias (N, or null), W (N, K) a
/// contiguous f32, f16 or bf16 view, in parallel over output features with `n_threads` threads.
inline void linear_few_rows(const float* x, std::int64_t ldx, const sdk::TensorView& weight, const float* bias,
                            float* y, std::int64_t ldy, std::int64_t m, std::int64_t k, std::int64_t n,
                            int n_threads) {
  few_rows_detail::with_typed_weights(weight, [&]<class W, class... Format>(const W* w, Format...) {
#pragma omp parallel num_threads(n_threads)
    {
      const auto [begin, end] = few_rows_share(n, omp_get_thread_num(), omp_get_num_threads());
      few_rows_detail::few_rows_range<W, Format...>(x, ldx, w, bias, y, ldy, m, k, begin, end);
    }
  });
}

/// The same product for output features [begin, end) only, on the calling thread: for callers
/// that split one step's work between the threads of their own parallel region.
inline void linear_few_rows_range(const float* x, std::int64_t ldx, const sdk::TensorView& weight, const float* bias,
                                  float* y, std::int64_t ldy, std::int64_t m, std::int64_t k, std::int64_t begin,
                                  std::int64_t end) {
  few_rows_detail::with_typed_weights(weight, [&]<class W, class... Format>(const W* w, Format...) {
    few_rows_detail::few_rows_range<W, Format...>(x, ldx, w, bias, y, ldy, m, k, begin, end);
  });
}

}  // namespace mambakit::plugin_common
