#pragma once
// 16 weights at a time as f32, from f32, bf16 or f16 storage (AVX-512 conversions where the
// target has them, portable code elsewhere), and the bulk widening of 16-bit parameters.

#include <cstdint>
#include <cstring>

#include "mambakit/sdk/half.hpp"
#include "mambakit/sdk/tensor_view.hpp"

#if defined(__AVX512F__) || defined(__F16C__)
#include <immintrin.h>
#endif

namespace mambakit::sdk::util {

namespace half_lanes {

typedef float Lanes __attribute__((vector_size(64)));           // 16 x f32
typedef float HalfLanes __attribute__((vector_size(32)));       // 8 x f32
typedef std::uint16_t Bits16 __attribute__((vector_size(32)));  // 16 x u16
typedef std::uint32_t Bits32 __attribute__((vector_size(64)));  // 16 x u32

struct Bf16 {};
struct F16 {};

/// 16 consecutive weights from `p` (no alignment needed) as f32.
inline Lanes load16(const float* p) {
  Lanes v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline Lanes load16(const std::uint16_t* p, Bf16) {
  Lanes v;
#if defined(__AVX512F__)
  const __m512 wide = _mm512_castsi512_ps(
      _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 16));
  std::memcpy(&v, &wide, sizeof v);
#else
  Bits16 bits;
  std::memcpy(&bits, p, sizeof bits);
  const Bits32 wide = __builtin_convertvector(bits, Bits32) << 16;
  std::memcpy(&v, &wide, sizeof v);
#endif
  return v;
}
inline Lanes load16(const std::uint16_t* p, F16) {
  Lanes v;
#if defined(__AVX512F__)
  const __m512 wide = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  std::memcpy(&v, &wide, sizeof v);
#elif defined(__F16C__)
  const __m256 low = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  const __m256 high = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 8)));
  std::memcpy(&v, &low, sizeof low);
  std::memcpy(reinterpret_cast<char*>(&v) + sizeof low, &high, sizeof high);
#else
  for (int i = 0; i < 16; ++i) v[i] = sdk::f16_to_f32(p[i]);
#endif
  return v;
}

}  // namespace half_lanes

/// Widens `count` f16 (or, with `bf16`, bf16) elements at `bits` to f32, 16 lanes at a time.
inline void widen_to_f32(const std::uint16_t* bits, bool bf16, float* destination, std::int64_t count) {
  using namespace half_lanes;
  const std::int64_t full = count - count % 16;
  for (std::int64_t i = 0; i < full; i += 16) {
    const Lanes v = bf16 ? load16(bits + i, Bf16{}) : load16(bits + i, F16{});
    std::memcpy(destination + i, &v, sizeof v);
  }
  for (std::int64_t i = full; i < count; ++i) {
    destination[i] = bf16 ? sdk::bf16_to_f32(bits[i]) : sdk::f16_to_f32(bits[i]);
  }
}

/// Widens `count` f16 or bf16 elements of `source` to f32.
inline void widen_to_f32(const sdk::TensorView& source, float* destination, std::int64_t count) {
  widen_to_f32(source.as<const std::uint16_t>(), source.dtype == sdk::DType::kBF16, destination, count);
}

}  // namespace mambakit::sdk::util
