#pragma once
// The decode path's projection with int8 weights (DType::kQ8, sdk/quantized.hpp):
// y = x W^T + bias for a few rows of x. Each input row is quantized per group as the weights are
// (symmetric int8, one f32 scale per group of the matrix's group_size: QuantizedRows), the
// products of a group
// are summed exactly in int32, and the groups are scaled and summed in f32:
//   y[m][n] = sum_g (s_w[n][g] * s_x[m][g]) * sum_{k in g} q_w[n][k] q_x[m][k]  (+ bias[n]).
//
// Three implementations, chosen once at run time from the CPU's features (best_int8_path()):
// AVX-512 VNNI (vpdpbusd: 64 products per instruction), AVX2 (vpmaddubsw + vpmaddwd: 32), and
// portable scalar code for any other CPU. Each sums every output in one fixed order, whatever
// the rows and threads computed with it; they differ from each other in the order of the f32
// sums of groups (vector lanes), so the paths agree to f32 rounding, not bit for bit.
//
// Dimensions: M rows, K in features, N out features.

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "mambakit/sdk/quantized.hpp"

#if defined(__x86_64__)
#include <immintrin.h>
#define MAMBAKIT_INT8_X86 1
#endif

namespace mambakit::sdk::util {

/// The implementations of the int8 product.
enum class Int8Path { kScalar = 0, kAvx2 = 1, kAvx512Vnni = 2 };

/// "scalar", "avx2" or "avx512-vnni".
inline const char* int8_path_name(Int8Path path) {
  switch (path) {
    case Int8Path::kAvx512Vnni: return "avx512-vnni";
    case Int8Path::kAvx2: return "avx2";
    default: return "scalar";
  }
}

/// Whether this CPU can run `path`.
inline bool int8_path_supported(Int8Path path) {
#if defined(MAMBAKIT_INT8_X86)
  switch (path) {
    case Int8Path::kAvx512Vnni:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vnni");
    case Int8Path::kAvx2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    default: return true;
  }
#else
  return path == Int8Path::kScalar;
#endif
}

/// The fastest path this CPU runs, found once.
inline Int8Path best_int8_path() {
  static const Int8Path path = int8_path_supported(Int8Path::kAvx512Vnni) ? Int8Path::kAvx512Vnni
                               : int8_path_supported(Int8Path::kAvx2)     ? Int8Path::kAvx2
                                                                          : Int8Path::kScalar;
  return path;
}

/// Input rows quantized for one matrix's groups: values (rows x row_stride, zero past the
/// row's K), scales (rows x groups) and, per group, -128 x the sum of its values (the VNNI
/// path multiplies unsigned weights q + 128, and adds this back).
class QuantizedRows {
 public:
  /// Quantizes rows [0, m) of x (row stride ldx) for `matrix` (K = matrix.cols): scale =
  /// max |x| / 127 per group, q = round-to-nearest-even(x x 127 / max |x|). A group holding a
  /// NaN or an infinity gets a NaN scale, so its outputs are NaN. When the rows and the groups
  /// are those of the previous call, the previous result is kept (a decode step's projections
  /// of one input, split between calls, quantize it once).
  void quantize(const float* x, std::int64_t ldx, std::int64_t m, const QuantizedMatrix& matrix) {
    const std::int64_t K = matrix.cols, G = matrix.group_size;
    if (same_input(x, ldx, m, matrix)) return;
    rows_ = m;
    row_stride_ = matrix.row_stride;
    groups_ = matrix.groups;
    cols_ = K;
    group_size_ = G;
    input_.resize(static_cast<std::size_t>(m * K));
    values_.resize(static_cast<std::size_t>(m * row_stride_));
    scales_.resize(static_cast<std::size_t>(m * groups_));
    offsets_.resize(static_cast<std::size_t>(m * groups_));
    for (std::int64_t r = 0; r < m; ++r) {
      const float* row = x + r * ldx;
      std::copy(row, row + K, input_.data() + r * K);
      std::int8_t* values = values_.data() + r * row_stride_;
      zero(values + K, row_stride_ - K);
      for (std::int64_t g = 0; g < groups_; ++g) {
        const std::int64_t start = g * G, end = start + G < K ? start + G : K;
        float scale = 0.0f;
        std::int32_t sum = 0;
#if defined(MAMBAKIT_INT8_X86)
        static const bool avx512 = int8_path_supported(Int8Path::kAvx512Vnni);
        if (avx512) {
          quantize_group_avx512(row + start, end - start, values + start, scale, sum);
        } else {
          quantize_group(row + start, end - start, values + start, scale, sum);
        }
#else
        quantize_group(row + start, end - start, values + start, scale, sum);
#endif
        scales_[static_cast<std::size_t>(r * groups_ + g)] = scale;
        offsets_[static_cast<std::size_t>(r * groups_ + g)] = -128 * sum;
      }
    }
  }

  [[nodiscard]] std::int64_t rows() const { return rows_; }
  [[nodiscard]] const std::int8_t* values(std::int64_t r) const { return values_.data() + r * row_stride_; }
  [[nodiscard]] const float* scales(std::int64_t r) const { return scales_.data() + r * groups_; }
  [[nodiscard]] const std::int32_t* offsets(std::int64_t r) const { return offsets_.data() + r * groups_; }

 private:
  /// Whether x's rows equal the last call's input, quantized for the same groups.
  bool same_input(const float* x, std::int64_t ldx, std::int64_t m, const QuantizedMatrix& matrix) const {
    if (m != rows_ || matrix.cols != cols_ || matrix.group_size != group_size_ || matrix.row_stride != row_stride_) {
      return false;
    }
    for (std::int64_t r = 0; r < m; ++r) {
      if (std::memcmp(x + r * ldx, input_.data() + r * cols_, static_cast<std::size_t>(cols_) * sizeof(float)) != 0) {
        return false;
      }
    }
    return true;
  }

  /// values[0, count) = 0 (a plain loop: GCC cannot prove std::fill's count non-negative here and
  /// warns).
  static void zero(std::int8_t* values, std::int64_t count) {
    for (std::int64_t k = 0; k < count; ++k) values[k] = 0;
  }

  /// One group of `count` inputs: values, scale (NaN when the group holds a NaN or an
  /// infinity; values 0 then) and the values' sum.
  static void quantize_group(const float* x, std::int64_t count, std::int8_t* values, float& scale, std::int32_t& sum) {
    float largest = 0.0f, poison = 0.0f;  // poison: NaN when the group holds a NaN or an infinity
    for (std::int64_t k = 0; k < count; ++k) {
      const float magnitude = std::fabs(x[k]);
      largest = magnitude > largest ? magnitude : largest;
      poison += x[k] * 0.0f;
    }
    sum = 0;
    if (poison != 0.0f || largest == 0.0f) {
      zero(values, count);
      scale = poison != 0.0f ? std::nanf("") : 0.0f;
      return;
    }
    const float inverse = 127.0f / largest;
    for (std::int64_t k = 0; k < count; ++k) {
      const auto q = static_cast<std::int32_t>(std::nearbyint(x[k] * inverse));
      values[k] = static_cast<std::int8_t>(q);
      sum += q;
    }
    scale = largest / 127.0f;
  }

#if defined(MAMBAKIT_INT8_X86)
  /// quantize_group with AVX-512, 16 inputs at a time (the same bytes: vcvtps2dq rounds to
  /// nearest even, as nearbyint does in the default rounding mode).
  [[gnu::target("avx512f,avx512bw")]] static void quantize_group_avx512(const float* x, std::int64_t count,
                                                                       std::int8_t* values, float& scale,
                                                                       std::int32_t& sum) {
    __m512 largest = _mm512_setzero_ps(), poison = _mm512_setzero_ps();
    for (std::int64_t k = 0; k < count; k += 16) {
      const __mmask16 lanes = count - k >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (count - k)) - 1u);
      const __m512 v = _mm512_maskz_loadu_ps(lanes, x + k);
      largest = _mm512_max_ps(largest, _mm512_abs_ps(v));
      poison = _mm512_fmadd_ps(v, _mm512_setzero_ps(), poison);
    }
    const float top = _mm512_reduce_max_ps(largest);
    if (_mm512_reduce_add_ps(poison) != 0.0f || top == 0.0f) {  // NaN != 0: a NaN or infinity
      zero(values, count);
      sum = 0;
      scale = top == 0.0f && _mm512_reduce_add_ps(poison) == 0.0f ? 0.0f : std::nanf("");
      return;
    }
    const __m512 inverse = _mm512_set1_ps(127.0f / top);
    __m512i sums = _mm512_setzero_si512();
    for (std::int64_t k = 0; k < count; k += 16) {
      const __mmask16 lanes = count - k >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (count - k)) - 1u);
      const __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_maskz_loadu_ps(lanes, x + k), inverse));
      _mm512_mask_cvtepi32_storeu_epi8(values + k, lanes, q);
      sums = _mm512_add_epi32(sums, _mm512_maskz_mov_epi32(lanes, q));
    }
    sum = _mm512_reduce_add_epi32(sums);
    scale = top / 127.0f;
  }
#endif

  std::int64_t rows_ = 0, row_stride_ = 0, groups_ = 0, cols_ = 0, group_size_ = 0;
  std::vector<float> input_;
  std::vector<std::int8_t> values_;
  std::vector<float> scales_;
  std::vector<std::int32_t> offsets_;
};

namespace int8_detail {

/// Input rows computed together against one weight row.
constexpr int kRowGroup = 4;
/// Linear weight streams read at once by one thread for a single input row (see few_rows.hpp).
constexpr int kStreams = 4;
/// How far ahead (bytes) the weight stream is prefetched, non-temporally.
constexpr std::int64_t kPrefetchBytes = 2048;

/// What one call of a path's `dots` computes: sums[q * kOutputs + o] = the group-scaled dot of
/// input row r0 + q with weight row n0 + o * step, for q < kRows, o < kOutputs.
struct DotsArgs {
  const QuantizedRows* x;
  std::int64_t r0;
  const QuantizedMatrix* w;
  std::int64_t n0;
  std::int64_t step;
  bool prefetch;
};

struct Scalar {
  template <int kRows, int kOutputs>
  static void dots(const DotsArgs& a, float* sums) {
    const QuantizedMatrix& w = *a.w;
    for (int q = 0; q < kRows; ++q) {
      const std::int8_t* xv = a.x->values(a.r0 + q);
      const float* xs = a.x->scales(a.r0 + q);
      for (int o = 0; o < kOutputs; ++o) {
        const std::int64_t n = a.n0 + o * a.step;
        const std::int8_t* wv = w.values + n * w.row_stride;
        const float* ws = w.scales + n * w.groups;
        float sum = 0.0f;
        for (std::int64_t g = 0; g < w.groups; ++g) {
          const std::int64_t start = g * w.group_size;
          const std::int64_t end = start + w.group_size < w.cols ? start + w.group_size : w.cols;
          std::int32_t products = 0;
          for (std::int64_t k = start; k < end; ++k) products += std::int32_t{wv[k]} * std::int32_t{xv[k]};
          sum += (ws[g] * xs[g]) * static_cast<float>(products);
        }
        sums[q * kOutputs + o] = sum;
      }
    }
  }
};

#if defined(MAMBAKIT_INT8_X86)

/// 64 weights per step: vpdpbusd multiplies unsigned by signed bytes, so the weights are
/// flipped to q + 128 (one xor) and each group's sum starts from -128 x its inputs' sum.
struct Avx512Vnni {
  template <int kRows, int kOutputs>
  [[gnu::target("avx512f,avx512bw,avx512vnni,fma")]] static void dots(const DotsArgs& a, float* sums) {
    const QuantizedMatrix& w = *a.w;
    const std::int64_t blocks = w.row_stride / 64;
    const std::int64_t per_group = w.group_size / 64;  // 0 for groups of 32: two per block
    const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
    const std::int8_t* wv[kOutputs];
    const float* ws[kOutputs];
    for (int o = 0; o < kOutputs; ++o) {
      wv[o] = w.values + (a.n0 + o * a.step) * w.row_stride;
      ws[o] = w.scales + (a.n0 + o * a.step) * w.groups;
    }
    __m512 acc[kRows][kOutputs];
    for (int q = 0; q < kRows; ++q) {
      for (int o = 0; o < kOutputs; ++o) acc[q][o] = _mm512_setzero_ps();
    }
    // (A lambda would not inherit this function's target: a macro keeps the block inline.)
#define MAMBAKIT_INT8_VNNI_BLOCK(b, isum)                                                                    \
  do {                                                                                                      \
    __m512i weights[kOutputs];                                                                              \
    for (int o = 0; o < kOutputs; ++o) {                                                                    \
      if (a.prefetch) _mm_prefetch(reinterpret_cast<const char*>(wv[o] + (b) * 64) + kPrefetchBytes, _MM_HINT_NTA); \
      weights[o] = _mm512_xor_si512(_mm512_loadu_si512(wv[o] + (b) * 64), flip);                           \
    }                                                                                                       \
    for (int q = 0; q < kRows; ++q) {                                                                       \
      const __m512i inputs = _mm512_loadu_si512(a.x->values(a.r0 + q) + (b) * 64);                          \
      for (int o = 0; o < kOutputs; ++o) (isum)[q][o] = _mm512_dpbusd_epi32((isum)[q][o], weights[o], inputs); \
    }                                                                                                       \
  } while (0)
    if (per_group == 0) {  // groups of 32: lanes 0-7 are group 2b, lanes 8-15 group 2b + 1
      for (std::int64_t b = 0; b < blocks; ++b) {
        const std::int64_t g = 2 * b;
        const bool second = g + 1 < w.groups;
        __m512i isum[kRows][kOutputs];
        for (int q = 0; q < kRows; ++q) {
          const std::int32_t* offsets = a.x->offsets(a.r0 + q);
          const __m512i start = _mm512_mask_set1_epi32(_mm512_maskz_set1_epi32(0x0001, offsets[g]), 0x0100,
                                                       second ? offsets[g + 1] : 0);
          for (int o = 0; o < kOutputs; ++o) isum[q][o] = start;
        }
        MAMBAKIT_INT8_VNNI_BLOCK(b, isum);
        for (int q = 0; q < kRows; ++q) {
          const float* xs = a.x->scales(a.r0 + q);
          for (int o = 0; o < kOutputs; ++o) {
            const __m512 scale = _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(ws[o][g] * xs[g]),
                                                      _mm512_set1_ps(second ? ws[o][g + 1] * xs[g + 1] : 0.0f));
            acc[q][o] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[q][o]), scale, acc[q][o]);
          }
        }
      }
    } else {
      for (std::int64_t g = 0; g < w.groups; ++g) {
        __m512i isum[kRows][kOutputs];
        for (int q = 0; q < kRows; ++q) {
          const __m512i start = _mm512_maskz_set1_epi32(0x0001, a.x->offsets(a.r0 + q)[g]);
          for (int o = 0; o < kOutputs; ++o) isum[q][o] = start;
        }
        const std::int64_t end = (g + 1) * per_group < blocks ? (g + 1) * per_group : blocks;
        for (std::int64_t b = g * per_group; b < end; ++b) MAMBAKIT_INT8_VNNI_BLOCK(b, isum);
        for (int q = 0; q < kRows; ++q) {
          const float xs = a.x->scales(a.r0 + q)[g];
          for (int o = 0; o < kOutputs; ++o) {
            acc[q][o] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[q][o]), _mm512_set1_ps(ws[o][g] * xs), acc[q][o]);
          }
        }
      }
    }
    for (int q = 0; q < kRows; ++q) {
      for (int o = 0; o < kOutputs; ++o) sums[q * kOutputs + o] = _mm512_reduce_add_ps(acc[q][o]);
    }
#undef MAMBAKIT_INT8_VNNI_BLOCK
  }
};

/// 32 weights per step: |w| times x with w's sign (vpsignb), pairs summed by vpmaddubsw (at most
/// 2 x 127 x 127, no saturation) and widened to int32 by vpmaddwd.
struct Avx2 {
  template <int kRows, int kOutputs>
  [[gnu::target("avx2,fma")]] static void dots(const DotsArgs& a, float* sums) {
    const QuantizedMatrix& w = *a.w;
    const std::int64_t chunks = w.row_stride / 32, per_group = w.group_size / 32;
    const __m256i ones = _mm256_set1_epi16(1);
    const std::int8_t* wv[kOutputs];
    const float* ws[kOutputs];
    for (int o = 0; o < kOutputs; ++o) {
      wv[o] = w.values + (a.n0 + o * a.step) * w.row_stride;
      ws[o] = w.scales + (a.n0 + o * a.step) * w.groups;
    }
    __m256 acc[kRows][kOutputs];
    for (int q = 0; q < kRows; ++q) {
      for (int o = 0; o < kOutputs; ++o) acc[q][o] = _mm256_setzero_ps();
    }
    for (std::int64_t g = 0; g < w.groups; ++g) {
      __m256i isum[kRows][kOutputs];
      for (int q = 0; q < kRows; ++q) {
        for (int o = 0; o < kOutputs; ++o) isum[q][o] = _mm256_setzero_si256();
      }
      const std::int64_t end = (g + 1) * per_group < chunks ? (g + 1) * per_group : chunks;
      for (std::int64_t c = g * per_group; c < end; ++c) {
        __m256i weights[kOutputs], magnitudes[kOutputs];
        for (int o = 0; o < kOutputs; ++o) {
          if (a.prefetch) _mm_prefetch(reinterpret_cast<const char*>(wv[o] + c * 32) + kPrefetchBytes, _MM_HINT_NTA);
          weights[o] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wv[o] + c * 32));
          magnitudes[o] = _mm256_sign_epi8(weights[o], weights[o]);
        }
        for (int q = 0; q < kRows; ++q) {
          const __m256i inputs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.x->values(a.r0 + q) + c * 32));
          for (int o = 0; o < kOutputs; ++o) {
            const __m256i pairs = _mm256_maddubs_epi16(magnitudes[o], _mm256_sign_epi8(inputs, weights[o]));
            isum[q][o] = _mm256_add_epi32(isum[q][o], _mm256_madd_epi16(pairs, ones));
          }
        }
      }
      for (int q = 0; q < kRows; ++q) {
        const float xs = a.x->scales(a.r0 + q)[g];
        for (int o = 0; o < kOutputs; ++o) {
          acc[q][o] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[q][o]), _mm256_set1_ps(ws[o][g] * xs), acc[q][o]);
        }
      }
    }
    for (int q = 0; q < kRows; ++q) {
      for (int o = 0; o < kOutputs; ++o) {
        const __m128 quads = _mm_add_ps(_mm256_castps256_ps128(acc[q][o]), _mm256_extractf128_ps(acc[q][o], 1));
        const __m128 pairs = _mm_add_ps(quads, _mm_movehl_ps(quads, quads));
        sums[q * kOutputs + o] = _mm_cvtss_f32(_mm_add_ss(pairs, _mm_movehdup_ps(pairs)));
      }
    }
  }
};

#endif  // MAMBAKIT_INT8_X86

/// y[r, n0 + o * step] (+ bias) for every input row r and o < kOutputs, kRowGroup rows at a time.
template <class Path, int kOutputs>
void outputs_for_all_rows(const QuantizedRows& x, const QuantizedMatrix& w, const float* bias, float* y,
                          std::int64_t ldy, std::int64_t n0, std::int64_t step) {
  float sums[kRowGroup * kOutputs];
  for (std::int64_t r0 = 0; r0 < x.rows(); r0 += kRowGroup) {
    const DotsArgs args{&x, r0, &w, n0, step, r0 == 0};  // later groups find the weight rows in L1
    const std::int64_t count = x.rows() - r0 < kRowGroup ? x.rows() - r0 : kRowGroup;
    switch (count) {
      case 4: Path::template dots<4, kOutputs>(args, sums); break;
      case 3: Path::template dots<3, kOutputs>(args, sums); break;
      case 2: Path::template dots<2, kOutputs>(args, sums); break;
      default: Path::template dots<1, kOutputs>(args, sums); break;
    }
    for (std::int64_t q = 0; q < count; ++q) {
      for (int o = 0; o < kOutputs; ++o) {
        const std::int64_t n = n0 + o * step;
        y[(r0 + q) * ldy + n] = sums[q * kOutputs + o] + (bias != nullptr ? bias[n] : 0.0f);
      }
    }
  }
}

/// Output features [begin, end) on the calling thread, streamed as in few_rows.hpp: one row
/// reads four quarters of the range at once, several rows take two weight rows per pass.
template <class Path>
void range(const QuantizedRows& x, const QuantizedMatrix& w, const float* bias, float* y, std::int64_t ldy,
           std::int64_t begin, std::int64_t end) {
  std::int64_t n = begin;
  if (x.rows() > 1) {
    for (; n + 2 <= end; n += 2) outputs_for_all_rows<Path, 2>(x, w, bias, y, ldy, n, 1);
  } else {
    const std::int64_t quarter = (end - begin) / kStreams;
    for (; n < begin + quarter; ++n) outputs_for_all_rows<Path, kStreams>(x, w, bias, y, ldy, n, quarter);
    n = begin + kStreams * quarter;
  }
  for (; n < end; ++n) outputs_for_all_rows<Path, 1>(x, w, bias, y, ldy, n, 1);
}

}  // namespace int8_detail

/// Output features [begin, end) of y (M, N; row stride ldy) = x W^T + bias (N, or null), with x
/// already quantized for W, on the calling thread with `path` (which the CPU must support).
inline void linear_int8_rows_range(const QuantizedRows& x, const QuantizedMatrix& weight, const float* bias, float* y,
                                   std::int64_t ldy, std::int64_t begin, std::int64_t end,
                                   Int8Path path = best_int8_path()) {
  switch (path) {
#if defined(MAMBAKIT_INT8_X86)
    case Int8Path::kAvx512Vnni:
      return int8_detail::range<int8_detail::Avx512Vnni>(x, weight, bias, y, ldy, begin, end);
    case Int8Path::kAvx2: return int8_detail::range<int8_detail::Avx2>(x, weight, bias, y, ldy, begin, end);
#endif
    default: return int8_detail::range<int8_detail::Scalar>(x, weight, bias, y, ldy, begin, end);
  }
}

#if defined(MAMBAKIT_INT8_X86)
namespace int8_detail {

/// The sequence kernel's layout of 32 outputs ("a panel"): for each 4 consecutive inputs, the 32
/// outputs' 4 weights flipped to q + 128 (one vpdpbusd operand: a lane per output), then the
/// panel's scales group by group (32 floats each). Outputs past N have zero weights and scales.
constexpr std::int64_t kPanel = 32;

[[gnu::target("avx512f,avx512bw")]] inline void pack_panel(const QuantizedMatrix& w, std::int64_t n0, std::uint8_t* values,
                                                           float* scales) {
  const std::int64_t quads = w.row_stride / 4;
  const std::int64_t valid = w.rows - n0 < kPanel ? w.rows - n0 : kPanel;
  const __m512i rows = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                          _mm512_set1_epi32(static_cast<int>(quads)));
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  for (int half = 0; half < 2; ++half) {
    const std::int64_t first = half * 16, count = valid - first;
    const __mmask16 lanes = count >= 16 ? __mmask16(0xFFFF) : count <= 0 ? __mmask16(0) : __mmask16((1u << count) - 1u);
    const std::int8_t* base = w.values + (n0 + first) * w.row_stride;
    for (std::int64_t q = 0; q < quads; ++q) {
      const __m512i gathered =
          _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), lanes, _mm512_add_epi32(rows, _mm512_set1_epi32(static_cast<int>(q))),
                                      base, 4);
      _mm512_storeu_si512(values + (q * kPanel + first) * 4, _mm512_xor_si512(gathered, flip));
    }
  }
  for (std::int64_t g = 0; g < w.groups; ++g) {
    for (std::int64_t o = 0; o < kPanel; ++o) scales[g * kPanel + o] = o < valid ? w.scales[(n0 + o) * w.groups + g] : 0.0f;
  }
}

/// y rows [r0, r0 + kRows), outputs [n0, n0 + 32) of the panel, from x quantized in `rows`.
template <int kRows>
[[gnu::target("avx512f,avx512bw,avx512vnni,fma")]] void panel_rows(const QuantizedRows& rows, std::int64_t r0,
                                                                    const QuantizedMatrix& w, const std::uint8_t* values,
                                                                    const float* scales, std::int64_t n0,
                                                                    const float* bias, float* y, std::int64_t ldy) {
  const std::int64_t quads = w.row_stride / 4, per_group = w.group_size / 4;
  __m512 acc[kRows][2];
  for (int q = 0; q < kRows; ++q) acc[q][0] = acc[q][1] = _mm512_setzero_ps();
  for (std::int64_t g = 0; g < w.groups; ++g) {
    __m512i isum[kRows][2];
    for (int q = 0; q < kRows; ++q) isum[q][0] = isum[q][1] = _mm512_set1_epi32(rows.offsets(r0 + q)[g]);
    const std::int64_t end = (g + 1) * per_group < quads ? (g + 1) * per_group : quads;
    for (std::int64_t quad = g * per_group; quad < end; ++quad) {
      const __m512i w0 = _mm512_loadu_si512(values + quad * kPanel * 4);
      const __m512i w1 = _mm512_loadu_si512(values + quad * kPanel * 4 + 64);
      for (int q = 0; q < kRows; ++q) {
        std::int32_t four;
        std::memcpy(&four, rows.values(r0 + q) + quad * 4, sizeof four);
        const __m512i inputs = _mm512_set1_epi32(four);
        isum[q][0] = _mm512_dpbusd_epi32(isum[q][0], w0, inputs);
        isum[q][1] = _mm512_dpbusd_epi32(isum[q][1], w1, inputs);
      }
    }
    const __m512 s0 = _mm512_loadu_ps(scales + g * kPanel), s1 = _mm512_loadu_ps(scales + g * kPanel + 16);
    for (int q = 0; q < kRows; ++q) {
      const __m512 xs = _mm512_set1_ps(rows.scales(r0 + q)[g]);
      acc[q][0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[q][0]), _mm512_mul_ps(s0, xs), acc[q][0]);
      acc[q][1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[q][1]), _mm512_mul_ps(s1, xs), acc[q][1]);
    }
  }
  const std::int64_t valid = w.rows - n0 < kPanel ? w.rows - n0 : kPanel;
  for (int half = 0; half < 2; ++half) {
    const std::int64_t count = valid - half * 16;
    if (count <= 0) break;
    const __mmask16 lanes = count >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << count) - 1u);
    const __m512 b = bias != nullptr ? _mm512_maskz_loadu_ps(lanes, bias + n0 + half * 16) : _mm512_setzero_ps();
    for (int q = 0; q < kRows; ++q) {
      _mm512_mask_storeu_ps(y + (r0 + q) * ldy + n0 + half * 16, lanes, _mm512_add_ps(acc[q][half], b));
    }
  }
}

/// Every row of `rows` against the panels [first, last) of W, on the calling thread.
inline void sequence_panels(const QuantizedRows& rows, const QuantizedMatrix& w, const float* bias, float* y,
                            std::int64_t ldy, std::int64_t first, std::int64_t last) {
  constexpr int kRows = 6;
  std::vector<std::uint8_t> values(static_cast<std::size_t>(w.row_stride * kPanel));
  std::vector<float> scales(static_cast<std::size_t>(w.groups * kPanel));
  for (std::int64_t panel = first; panel < last; ++panel) {
    const std::int64_t n0 = panel * kPanel;
    pack_panel(w, n0, values.data(), scales.data());
    std::int64_t r = 0;
    for (; r + kRows <= rows.rows(); r += kRows) {
      panel_rows<kRows>(rows, r, w, values.data(), scales.data(), n0, bias, y, ldy);
    }
    switch (rows.rows() - r) {
      case 5: panel_rows<5>(rows, r, w, values.data(), scales.data(), n0, bias, y, ldy); break;
      case 4: panel_rows<4>(rows, r, w, values.data(), scales.data(), n0, bias, y, ldy); break;
      case 3: panel_rows<3>(rows, r, w, values.data(), scales.data(), n0, bias, y, ldy); break;
      case 2: panel_rows<2>(rows, r, w, values.data(), scales.data(), n0, bias, y, ldy); break;
      case 1: panel_rows<1>(rows, r, w, values.data(), scales.data(), n0, bias, y, ldy); break;
      default: break;
    }
  }
}

}  // namespace int8_detail
#endif

/// y (M, N; row stride ldy) = x (M, K; row stride ldx) W^T + bias for whole sequences, on
/// `n_threads` threads. With AVX-512 VNNI: all rows quantized once, then W in panels of 32
/// outputs, each repacked so that one vpdpbusd multiplies 4 inputs of a row by 32 outputs'
/// weights (a lane per output: a group's scaling then costs one conversion per 16 outputs, not
/// per output), the panels split between threads. Elsewhere: rows in blocks of 256, each
/// block quantized once and multiplied by every output through the few-rows product.
inline void linear_int8_forward(const float* x, std::int64_t ldx, const QuantizedMatrix& weight, const float* bias,
                                float* y, std::int64_t ldy, std::int64_t m, int n_threads) {
  constexpr std::int64_t kBlockRows = 256, kOutputBlock = 16;
  const Int8Path path = best_int8_path();
  const int threads = n_threads > 0 ? n_threads : 1;
  QuantizedRows rows;
#if defined(MAMBAKIT_INT8_X86)
  if (path == Int8Path::kAvx512Vnni) {
    rows.quantize(x, ldx, m, weight);
    const std::int64_t panels = (weight.rows + int8_detail::kPanel - 1) / int8_detail::kPanel;
#pragma omp parallel num_threads(threads)
    {
      const int thread = omp_get_thread_num(), team = omp_get_num_threads();
      int8_detail::sequence_panels(rows, weight, bias, y, ldy, panels * thread / team, panels * (thread + 1) / team);
    }
    return;
  }
#endif
  const std::int64_t n = weight.rows, chunks = (n + kOutputBlock - 1) / kOutputBlock;
  for (std::int64_t r0 = 0; r0 < m; r0 += kBlockRows) {
    const std::int64_t count = m - r0 < kBlockRows ? m - r0 : kBlockRows;
    rows.quantize(x + r0 * ldx, ldx, count, weight);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (std::int64_t chunk = 0; chunk < chunks; ++chunk) {
      const std::int64_t begin = chunk * kOutputBlock, end = begin + kOutputBlock < n ? begin + kOutputBlock : n;
      linear_int8_rows_range(rows, weight, bias, y + r0 * ldy, ldy, begin, end, path);
    }
  }
}

/// The input rows of the calling thread's last int8 product (reused, so decode allocates once).
inline QuantizedRows& thread_quantized_rows() {
  thread_local QuantizedRows rows;
  return rows;
}

}  // namespace mambakit::sdk::util
