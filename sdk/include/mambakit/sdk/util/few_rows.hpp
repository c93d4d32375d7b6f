#pragma once
// The decode path's projection: y = x W^T + bias for a few rows of x (one token per sequence),
// with W in f32, f16 or bf16 and f32 accumulation, or int8 (DType::kQ8, int8_rows.hpp).
// Memory-bound: W is streamed once per call, so half-precision weights halve the bytes moved.
//
// Every y[m][n] is summed in one fixed order (two 16-lane accumulators over K, a fixed reduction
// tree, then the tail), whatever the number of rows and threads, so a row's result does not depend on the rows
// computed with it: batched generation equals generating each row alone.
//
// Dimensions: M rows, K in features, N out features.

#include <omp.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>

#include "mambakit/sdk/util/half_lanes.hpp"
#include "mambakit/sdk/util/int8_rows.hpp"
#include "mambakit/sdk/util/speed_shares.hpp"

namespace mambakit::sdk::util {

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

/// Input rows computed together against one weight row (2 accumulators each stay in registers).
constexpr int kRowGroup = 4;
/// How far ahead (bytes) the weight stream is prefetched. The prefetch is non-temporal: the
/// weights are used once per call and would only evict x and the state from the caches.
constexpr std::int64_t kPrefetchBytes = 2048;
/// Linear weight streams read at once by one thread for a single input row.
constexpr int kStreams = 4;
/// Granularity of the split between threads, in output features.
constexpr std::int64_t kShareBlock = 8;

/// sums[q * kOutputs + o] = x[q] . W[o * step] for q < kRows, o < kOutputs: each of the kOutputs
/// weight rows is read once, 32 weights at a time, in address order (a thread's share is one to
/// kStreams linear streams that the hardware prefetchers follow); each weight vector is used for all
/// kRows input rows from registers. Each sum keeps its own two 16-lane accumulators
/// (the even and odd 16-weight halves of each 32), so its order depends on neither kRows nor
/// kOutputs.
template <int kRows, int kOutputs, class W, class... Format>
inline void rows_times_weight_rows(const float* x, std::int64_t ldx, const W* w, std::int64_t step, std::int64_t k,
                                   bool prefetch, float* sums) {
  const std::int64_t row_step = step * k;
  const std::int64_t k32 = k - k % 32, k16 = k - k % 16;
  Lanes even[kRows][kOutputs] = {}, odd[kRows][kOutputs] = {};
  for (std::int64_t i = 0; i < k32; i += 32) {
    if (prefetch) {
      for (int o = 0; o < kOutputs; ++o) {
        for (std::int64_t byte = 0; byte < 32 * std::int64_t{sizeof(W)}; byte += 64) {
          __builtin_prefetch(reinterpret_cast<const char*>(w + o * row_step + i) + byte + kPrefetchBytes, 0, 0);
        }
      }
    }
    Lanes w_even[kOutputs], w_odd[kOutputs];
    for (int o = 0; o < kOutputs; ++o) {
      w_even[o] = load16(w + o * row_step + i, Format{}...);
      w_odd[o] = load16(w + o * row_step + i + 16, Format{}...);
    }
    for (int q = 0; q < kRows; ++q) {
      const Lanes x_even = load16(x + q * ldx + i), x_odd = load16(x + q * ldx + i + 16);
      for (int o = 0; o < kOutputs; ++o) {
        even[q][o] += w_even[o] * x_even;
        odd[q][o] += w_odd[o] * x_odd;
      }
    }
  }
  if (k16 > k32) {
    for (int q = 0; q < kRows; ++q) {
      const Lanes x_even = load16(x + q * ldx + k32);
      for (int o = 0; o < kOutputs; ++o) even[q][o] += load16(w + o * row_step + k32, Format{}...) * x_even;
    }
  }
  for (int q = 0; q < kRows; ++q) {
    for (int o = 0; o < kOutputs; ++o) {
      float sum = reduce(even[q][o] + odd[q][o]);
      for (std::int64_t i = k16; i < k; ++i) sum += scalar(w + o * row_step, i, Format{}...) * x[q * ldx + i];
      sums[q * kOutputs + o] = sum;
    }
  }
}

/// y[r, j0 + o * step] for every input row r < m and o < kOutputs, in groups of kRowGroup input
/// rows.
template <int kOutputs, class W, class... Format>
inline void outputs_for_all_rows(const float* x, std::int64_t ldx, const W* weight, const float* bias, float* y,
                                 std::int64_t ldy, std::int64_t m, std::int64_t k, std::int64_t j0,
                                 std::int64_t step) {
  float sums[kRowGroup * kOutputs];
  const W* w = weight + j0 * k;
  for (std::int64_t r0 = 0; r0 < m; r0 += kRowGroup) {
    const float* rows = x + r0 * ldx;
    const bool first = r0 == 0;  // later groups find the weight rows in L1
    const std::int64_t count = std::min<std::int64_t>(kRowGroup, m - r0);
    switch (count) {
      case 4: rows_times_weight_rows<4, kOutputs, W, Format...>(rows, ldx, w, step, k, first, sums); break;
      case 3: rows_times_weight_rows<3, kOutputs, W, Format...>(rows, ldx, w, step, k, first, sums); break;
      case 2: rows_times_weight_rows<2, kOutputs, W, Format...>(rows, ldx, w, step, k, first, sums); break;
      default: rows_times_weight_rows<1, kOutputs, W, Format...>(rows, ldx, w, step, k, first, sums); break;
    }
    for (std::int64_t q = 0; q < count; ++q) {
      for (int o = 0; o < kOutputs; ++o) {
        const std::int64_t j = j0 + o * step;
        y[(r0 + q) * ldy + j] = sums[q * kOutputs + o] + (bias != nullptr ? bias[j] : 0.0f);
      }
    }
  }
}

/// Output features [begin, end) on the calling thread. With several input rows the arithmetic
/// starts to count: two adjacent weight rows per pass halve the loads of x per multiply-add. One
/// token (m = 1) is pure streaming: the four quarters of the range are then read at once, four
/// linear streams that each get a hardware prefetcher, which keeps more memory reads in flight
/// than one stream (a read-only loop over 512 MB here: 1 stream per core 64-68 GB/s, 4 streams
/// 75-79 GB/s).
template <class W, class... Format>
void few_rows_range(const float* x, std::int64_t ldx, const W* weight, const float* bias, float* y, std::int64_t ldy,
                    std::int64_t m, std::int64_t k, std::int64_t begin, std::int64_t end) {
  std::int64_t j = begin;
  if (m > 1) {
    for (; j + 2 <= end; j += 2) outputs_for_all_rows<2, W, Format...>(x, ldx, weight, bias, y, ldy, m, k, j, 1);
  } else {
    const std::int64_t quarter = (end - begin) / kStreams;
    for (; j < begin + quarter; ++j) {
      outputs_for_all_rows<kStreams, W, Format...>(x, ldx, weight, bias, y, ldy, m, k, j, quarter);
    }
    j = begin + kStreams * quarter;
  }
  for (; j < end; ++j) outputs_for_all_rows<1, W, Format...>(x, ldx, weight, bias, y, ldy, m, k, j, 1);
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
      throw std::invalid_argument(std::string("linear_few_rows: weights must be f32, f16, bf16 or int8, not ") +
                                  sdk::dtype_name(weight.dtype));
  }
}

}  // namespace few_rows_detail

/// Output features [begin, end) of `n` for thread `thread` of a team of `team` under `plan`:
/// whole blocks of kShareBlock features, in proportion to the threads' measured speeds.
inline std::pair<std::int64_t, std::int64_t> few_rows_share(const SpeedShares::Plan& plan, std::int64_t n, int thread,
                                                            int team) {
  return plan.range(n, few_rows_detail::kShareBlock, thread, team);
}

/// y (M, N; row stride ldy) = x (M, K; row stride ldx) W^T + bias (N, or null), W (N, K) a
/// contiguous f32, f16 or bf16 view or an int8 one (kQ8), in parallel over output features with `n_threads` threads,
/// split by `shares` (which this call's timings then update).
inline void linear_few_rows(const float* x, std::int64_t ldx, const sdk::TensorView& weight, const float* bias,
                            float* y, std::int64_t ldy, std::int64_t m, std::int64_t k, std::int64_t n,
                            int n_threads, SpeedShares& shares) {
  const SpeedShares::Plan plan = shares.plan(n_threads);
  std::array<double, SpeedShares::kMaxThreads> seconds{};
  if (weight.dtype == sdk::DType::kQ8) {
    const auto& matrix = *weight.as<const sdk::QuantizedMatrix>();
    QuantizedRows& rows = thread_quantized_rows();
    rows.quantize(x, ldx, m, matrix);
    const Int8Path path = best_int8_path();
#pragma omp parallel num_threads(n_threads)
    {
      const int thread = omp_get_thread_num(), team = omp_get_num_threads();
      const double start = omp_get_wtime();
      const auto [begin, end] = few_rows_share(plan, n, thread, team);
      linear_int8_rows_range(rows, matrix, bias, y, ldy, begin, end, path);
      if (team == plan.threads()) seconds[static_cast<std::size_t>(thread)] = omp_get_wtime() - start;
    }
    shares.record(plan, seconds.data());
    return;
  }
  few_rows_detail::with_typed_weights(weight, [&]<class W, class... Format>(const W* w, Format...) {
#pragma omp parallel num_threads(n_threads)
    {
      const int thread = omp_get_thread_num(), team = omp_get_num_threads();
      const double start = omp_get_wtime();
      const auto [begin, end] = few_rows_share(plan, n, thread, team);
      few_rows_detail::few_rows_range<W, Format...>(x, ldx, w, bias, y, ldy, m, k, begin, end);
      if (team == plan.threads()) seconds[static_cast<std::size_t>(thread)] = omp_get_wtime() - start;
    }
  });
  shares.record(plan, seconds.data());
}

/// The same product for output features [begin, end) only, on the calling thread: for callers
/// that split one step's work between the threads of their own parallel region.
inline void linear_few_rows_range(const float* x, std::int64_t ldx, const sdk::TensorView& weight, const float* bias,
                                  float* y, std::int64_t ldy, std::int64_t m, std::int64_t k, std::int64_t begin,
                                  std::int64_t end) {
  if (weight.dtype == sdk::DType::kQ8) {
    const auto& matrix = *weight.as<const sdk::QuantizedMatrix>();
    QuantizedRows& rows = thread_quantized_rows();
    rows.quantize(x, ldx, m, matrix);
    linear_int8_rows_range(rows, matrix, bias, y, ldy, begin, end);
    return;
  }
  few_rows_detail::with_typed_weights(weight, [&]<class W, class... Format>(const W* w, Format...) {
    few_rows_detail::few_rows_range<W, Format...>(x, ldx, w, bias, y, ldy, m, k, begin, end);
  });
}

}  // namespace mambakit::sdk::util
