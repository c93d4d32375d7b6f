#pragma once
/// \file
/// Conversions between float32 and the 16-bit float formats weights are stored in: IEEE 754
/// binary16 ("f16") and bfloat16 ("bf16", the upper half of an f32). Exact bit manipulations,
/// independent of the floating-point environment, inline for hot loops; thread-safe.

#include <bit>
#include <cstdint>

namespace mambakit::sdk {

/// The binary16 value with bit pattern `bits` as a float. Exact for every pattern: normals,
/// subnormals, signed zeros and infinities; a NaN stays a NaN with its sign and payload.
inline float f16_to_f32(std::uint16_t bits) noexcept {
  const std::uint32_t sign = static_cast<std::uint32_t>(bits & 0x8000u) << 16;
  const std::uint32_t exponent = (bits >> 10) & 0x1fu;
  const std::uint32_t mantissa = bits & 0x3ffu;
  if (exponent == 0x1fu) {
    return std::bit_cast<float>(sign | 0x7f800000u | (mantissa << 13));
  }
  if (exponent == 0) {
    // Zero or subnormal: mantissa * 2^-24, exact in float.
    const float magnitude = static_cast<float>(mantissa) * 0x1p-24f;
    return sign != 0 ? -magnitude : magnitude;
  }
  return std::bit_cast<float>(sign | ((exponent + (127 - 15)) << 23) | (mantissa << 13));
}

/// The binary16 bit pattern nearest to `value`, ties to even. Magnitudes from 65520 up become
/// infinity, magnitudes up to 2^-25 become zero (keeping the sign), and a NaN becomes a quiet NaN
/// with the same sign.
inline std::uint16_t f32_to_f16(float value) noexcept {
  const std::uint32_t x = std::bit_cast<std::uint32_t>(value);
  const auto sign = static_cast<std::uint16_t>((x >> 16) & 0x8000u);
  const std::uint32_t magnitude = x & 0x7fffffffu;
  if (magnitude > 0x7f800000u) {  // NaN: keep the top payload bits, force the quiet bit
    return static_cast<std::uint16_t>(sign | 0x7e00u | ((magnitude >> 13) & 0x3ffu));
  }
  if (magnitude >= 0x477ff000u) {  // 65520 and above (incl. inf) round to inf
    return static_cast<std::uint16_t>(sign | 0x7c00u);
  }
  if (magnitude >= 0x38800000u) {  // 2^-14 and above: a normal binary16
    std::uint32_t half = (((magnitude >> 23) - (127 - 15)) << 10) | ((magnitude >> 13) & 0x3ffu);
    const std::uint32_t rest = magnitude & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (half & 1u) != 0)) {
      ++half;  // a carry into the exponent is the correct rounding
    }
    return static_cast<std::uint16_t>(sign | half);
  }
  const std::uint32_t exponent = magnitude >> 23;
  if (exponent < 102) {  // below 2^-25: rounds to zero
    return sign;
  }
  // A binary16 subnormal, in units of 2^-24: the 24-bit significand shifted right by 14..24.
  const std::uint32_t significand = (magnitude & 0x7fffffu) | 0x800000u;
  const std::uint32_t shift = 126 - exponent;
  std::uint32_t half = significand >> shift;
  const std::uint32_t rest = significand & ((1u << shift) - 1u);
  const std::uint32_t halfway = 1u << (shift - 1);
  if (rest > halfway || (rest == halfway && (half & 1u) != 0)) {
    ++half;  // may reach 0x400, the smallest normal, which is the correct encoding
  }
  return static_cast<std::uint16_t>(sign | half);
}

/// The bfloat16 value with bit pattern `bits` as a float (exact).
inline float bf16_to_f32(std::uint16_t bits) noexcept {
  return std::bit_cast<float>(static_cast<std::uint32_t>(bits) << 16);
}

/// The bfloat16 bit pattern nearest to `value`, ties to even; values that round beyond the
/// largest bfloat16 become infinity, and a NaN stays a (quiet) NaN with the same sign.
inline std::uint16_t f32_to_bf16(float value) noexcept {
  const std::uint32_t x = std::bit_cast<std::uint32_t>(value);
  if ((x & 0x7fffffffu) > 0x7f800000u) {
    return static_cast<std::uint16_t>((x >> 16) | 0x0040u);
  }
  const std::uint32_t rounding = 0x7fffu + ((x >> 16) & 1u);
  return static_cast<std::uint16_t>((x + rounding) >> 16);
}

}  // namespace mambakit::sdk
