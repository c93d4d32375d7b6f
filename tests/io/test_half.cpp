// f16 and bf16 conversions: hand-derived bit patterns, round-to-nearest-even at every tie, and
// exhaustive checks of all 65536 patterns against an independent formula.

#include <bit>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "io_test_support.hpp"
#include "mambakit/half.hpp"

using mambakit::bf16_to_f32;
using mambakit::f16_to_f32;
using mambakit::f32_to_bf16;
using mambakit::f32_to_f16;
using mambakit::sdk::DType;
using Catch::Matchers::Contains;

namespace {

float from_bits(std::uint32_t bits) { return std::bit_cast<float>(bits); }
std::uint32_t bits_of(float value) { return std::bit_cast<std::uint32_t>(value); }

// The value of a binary16 pattern by the textbook formula, in double.
double f16_reference(std::uint16_t bits) {
  const int sign = (bits >> 15) != 0 ? -1 : 1;
  const int exponent = (bits >> 10) & 0x1f;
  const int mantissa = bits & 0x3ff;
  if (exponent == 0) {
    return sign * std::ldexp(mantissa, -24);
  }
  if (exponent == 31) {
    return mantissa == 0 ? sign * std::numeric_limits<double>::infinity() : std::numeric_limits<double>::quiet_NaN();
  }
  return sign * std::ldexp(1024 + mantissa, exponent - 25);
}

bool is_f16_nan(std::uint16_t bits) { return (bits & 0x7c00) == 0x7c00 && (bits & 0x3ff) != 0; }

}  // namespace

TEST_CASE("f16_to_f32 decodes hand-derived patterns") {
  CHECK(f16_to_f32(0x3c00) == 1.0f);
  CHECK(f16_to_f32(0xc000) == -2.0f);
  CHECK(f16_to_f32(0x7bff) == 65504.0f);                  // largest finite
  CHECK(f16_to_f32(0x0400) == 0x1p-14f);                  // smallest normal
  CHECK(f16_to_f32(0x0001) == 0x1p-24f);                  // smallest subnormal
  CHECK(f16_to_f32(0x8001) == -0x1p-24f);
  CHECK(f16_to_f32(0x03ff) == 1023 * 0x1p-24f);           // largest subnormal
  CHECK(f16_to_f32(0x3555) == 0.333251953125f);           // 1/3 rounded
  CHECK(f16_to_f32(0x3bff) == 0.99951171875f);            // 1 - 2^-11
  CHECK(bits_of(f16_to_f32(0x0000)) == 0x00000000u);
  CHECK(bits_of(f16_to_f32(0x8000)) == 0x80000000u);      // -0 keeps its sign
  CHECK(f16_to_f32(0x7c00) == std::numeric_limits<float>::infinity());
  CHECK(f16_to_f32(0xfc00) == -std::numeric_limits<float>::infinity());
  CHECK(std::isnan(f16_to_f32(0x7e00)));
  CHECK(std::isnan(f16_to_f32(0x7c01)));                  // signalling NaN stays NaN
  CHECK(std::signbit(f16_to_f32(0xfe00)));
}

TEST_CASE("f32_to_f16 encodes hand-derived values, rounding to nearest even") {
  CHECK(f32_to_f16(1.0f) == 0x3c00);
  CHECK(f32_to_f16(-2.0f) == 0xc000);
  CHECK(f32_to_f16(65504.0f) == 0x7bff);
  CHECK(f32_to_f16(0x1p-24f) == 0x0001);
  CHECK(f32_to_f16(0x1p-14f) == 0x0400);
  CHECK(f32_to_f16(0.0f) == 0x0000);
  CHECK(f32_to_f16(-0.0f) == 0x8000);

  // Overflow: 65520 is the midpoint between 65504 (odd mantissa) and 65536, so it rounds up to inf.
  CHECK(f32_to_f16(65519.0f) == 0x7bff);
  CHECK(f32_to_f16(65520.0f) == 0x7c00);
  CHECK(f32_to_f16(-65520.0f) == 0xfc00);
  CHECK(f32_to_f16(1e6f) == 0x7c00);
  CHECK(f32_to_f16(std::numeric_limits<float>::max()) == 0x7c00);
  CHECK(f32_to_f16(std::numeric_limits<float>::infinity()) == 0x7c00);
  CHECK(f32_to_f16(-std::numeric_limits<float>::infinity()) == 0xfc00);

  // NaN stays NaN, sign kept, even when only low payload bits are set.
  CHECK(is_f16_nan(f32_to_f16(std::numeric_limits<float>::quiet_NaN())));
  CHECK(is_f16_nan(f32_to_f16(from_bits(0x7f800001u))));
  CHECK(f32_to_f16(from_bits(0xffc00000u)) == 0xfe00);

  // Normal range ties: 1 + 2^-11 lies halfway between 0x3c00 and 0x3c01.
  CHECK(f32_to_f16(1.0f + 0x1p-11f) == 0x3c00);                 // tie -> even
  CHECK(f32_to_f16(1.0f + 3 * 0x1p-11f) == 0x3c02);             // tie -> even (up)
  CHECK(f32_to_f16(1.0f + 0x1p-11f + 0x1p-20f) == 0x3c01);      // just above the tie
  CHECK(f32_to_f16(1.0f + 0x1p-11f - 0x1p-20f) == 0x3c00);      // just below
  CHECK(f32_to_f16(2049.0f) == 0x6800);                         // 2048 | 2050: even is 2048
  CHECK(f32_to_f16(2051.0f) == 0x6802);                         // 2050 | 2052: even is 2052
  CHECK(f32_to_f16(0x1.ffep0f) == 0x4000);                      // carry into the exponent

  // Subnormal ties, in units of 2^-24.
  CHECK(f32_to_f16(0x1p-25f) == 0x0000);                        // 0.5 unit -> 0 (even)
  CHECK(f32_to_f16(-0x1p-25f) == 0x8000);
  CHECK(f32_to_f16(std::nextafter(0x1p-25f, 1.0f)) == 0x0001);  // above half a unit
  CHECK(f32_to_f16(3 * 0x1p-25f) == 0x0002);                    // 1.5 units -> 2
  CHECK(f32_to_f16(5 * 0x1p-25f) == 0x0002);                    // 2.5 units -> 2
  CHECK(f32_to_f16(0x1p-26f) == 0x0000);
  CHECK(f32_to_f16(from_bits(0x00000001u)) == 0x0000);          // f32 subnormal
  CHECK(f32_to_f16(1023.5f * 0x1p-24f) == 0x0400);              // largest subnormal tie -> smallest normal
  CHECK(f32_to_f16(1022.5f * 0x1p-24f) == 0x03fe);
}

TEST_CASE("every f16 pattern decodes to the textbook value and round-trips") {
  for (std::uint32_t i = 0; i < 65536; ++i) {
    const auto bits = static_cast<std::uint16_t>(i);
    const float value = f16_to_f32(bits);
    if (is_f16_nan(bits)) {
      REQUIRE(std::isnan(value));
      REQUIRE(std::signbit(value) == ((bits & 0x8000) != 0));
      const std::uint16_t back = f32_to_f16(value);
      REQUIRE(is_f16_nan(back));
      REQUIRE((back & 0x8000) == (bits & 0x8000));
      if ((bits & 0x200) != 0) {  // a quiet NaN keeps its payload exactly
        REQUIRE(back == bits);
      }
      continue;
    }
    INFO("pattern 0x" << std::hex << i);
    REQUIRE(static_cast<double>(value) == f16_reference(bits));
    REQUIRE(std::signbit(value) == ((bits & 0x8000) != 0));
    REQUIRE(f32_to_f16(value) == bits);
  }
}

TEST_CASE("f32_to_f16 rounds every midpoint between neighbouring f16 values to even") {
  for (std::uint16_t bits = 0; bits < 0x7bff; ++bits) {
    const float low = f16_to_f32(bits);
    const float high = f16_to_f32(static_cast<std::uint16_t>(bits + 1));
    const float middle = (low + high) / 2;  // exact: f16 values have 11 significant bits
    INFO("between 0x" << std::hex << bits << " and 0x" << bits + 1);
    REQUIRE(f32_to_f16(middle) == ((bits & 1) == 0 ? bits : bits + 1));
    REQUIRE(f32_to_f16(std::nextafter(middle, 0.0f)) == bits);
    REQUIRE(f32_to_f16(std::nextafter(middle, 1e9f)) == bits + 1);
    REQUIRE(f32_to_f16(-middle) == (f32_to_f16(middle) | 0x8000));
  }
}

TEST_CASE("bf16 conversions: hand-derived patterns and ties") {
  CHECK(bf16_to_f32(0x3f80) == 1.0f);
  CHECK(bf16_to_f32(0xc000) == -2.0f);
  CHECK(bf16_to_f32(0x7f7f) == 0x1.fep127f);  // largest finite
  CHECK(bf16_to_f32(0x0080) == 0x1p-126f);    // smallest normal
  CHECK(bf16_to_f32(0x0001) == 0x1p-133f);    // smallest subnormal
  CHECK(bf16_to_f32(0x7f80) == std::numeric_limits<float>::infinity());
  CHECK(bf16_to_f32(0xff80) == -std::numeric_limits<float>::infinity());
  CHECK(std::isnan(bf16_to_f32(0x7fc0)));
  CHECK(bits_of(bf16_to_f32(0x8000)) == 0x80000000u);

  CHECK(f32_to_bf16(1.0f) == 0x3f80);
  CHECK(f32_to_bf16(-2.0f) == 0xc000);
  CHECK(f32_to_bf16(-0.0f) == 0x8000);
  CHECK(f32_to_bf16(0x1p-133f) == 0x0001);
  CHECK(f32_to_bf16(1.0f + 0x1p-8f) == 0x3f80);                 // tie -> even
  CHECK(f32_to_bf16(1.0f + 3 * 0x1p-8f) == 0x3f82);             // tie -> even (up)
  CHECK(f32_to_bf16(1.0f + 0x1p-8f + 0x1p-20f) == 0x3f81);
  CHECK(f32_to_bf16(0x1.fep127f) == 0x7f7f);
  CHECK(f32_to_bf16(std::numeric_limits<float>::max()) == 0x7f80);  // rounds beyond the largest
  CHECK(f32_to_bf16(std::numeric_limits<float>::infinity()) == 0x7f80);
  CHECK(f32_to_bf16(-std::numeric_limits<float>::infinity()) == 0xff80);
  // NaN stays NaN: a payload only in the low 16 bits must not truncate to infinity.
  CHECK(f32_to_bf16(from_bits(0x7f800001u)) == 0x7fc0);
  CHECK(f32_to_bf16(from_bits(0xffc00000u)) == 0xffc0);
  CHECK(f32_to_bf16(std::numeric_limits<float>::quiet_NaN()) == 0x7fc0);
}

TEST_CASE("every bf16 pattern round-trips, and midpoints round to even") {
  for (std::uint32_t i = 0; i < 65536; ++i) {
    const auto bits = static_cast<std::uint16_t>(i);
    const float value = bf16_to_f32(bits);
    REQUIRE(bits_of(value) == i << 16);
    if (std::isnan(value)) {
      REQUIRE(std::isnan(bf16_to_f32(f32_to_bf16(value))));
      continue;
    }
    REQUIRE(f32_to_bf16(value) == bits);
    if ((i & 0x7fff) < 0x7f7f) {
      const float middle = from_bits((i << 16) | 0x8000u);
      REQUIRE(f32_to_bf16(middle) == ((i & 1) == 0 ? i : i + 1));
    }
  }
}

TEST_CASE("convert_to_f32 converts F32, F16, BF16 and F64 from unaligned memory") {
  const std::vector<float> expected = {1.0f, -2.0f, 0.5f, 65504.0f, 0x1p-24f};
  std::vector<unsigned char> buffer(1 + expected.size() * 8);
  std::vector<float> out(expected.size());
  unsigned char* unaligned = buffer.data() + 1;

  for (std::size_t i = 0; i < expected.size(); ++i) {
    const std::uint16_t half = mambakit::f32_to_f16(expected[i]);
    std::memcpy(unaligned + 2 * i, &half, 2);
  }
  mambakit::convert_to_f32(DType::kF16, unaligned, out.data(), static_cast<std::int64_t>(out.size()));
  CHECK(out == expected);

  const std::vector<float> bf16_values = {1.0f, -2.0f, 0.5f, 65536.0f, 0x1p-24f};
  for (std::size_t i = 0; i < bf16_values.size(); ++i) {
    const std::uint16_t half = mambakit::f32_to_bf16(bf16_values[i]);
    std::memcpy(unaligned + 2 * i, &half, 2);
  }
  mambakit::convert_to_f32(DType::kBF16, unaligned, out.data(), static_cast<std::int64_t>(out.size()));
  CHECK(out == bf16_values);

  for (std::size_t i = 0; i < expected.size(); ++i) {
    const double wide = expected[i];
    std::memcpy(unaligned + 8 * i, &wide, 8);
  }
  mambakit::convert_to_f32(DType::kF64, unaligned, out.data(), static_cast<std::int64_t>(out.size()));
  CHECK(out == expected);
  const double third = 1.0 / 3.0;
  float rounded = 0;
  mambakit::convert_to_f32(DType::kF64, &third, &rounded, 1);
  CHECK(rounded == static_cast<float>(third));

  std::memcpy(unaligned, expected.data(), expected.size() * 4);
  mambakit::convert_to_f32(DType::kF32, unaligned, out.data(), static_cast<std::int64_t>(out.size()));
  CHECK(out == expected);
  mambakit::convert_to_f32(DType::kF32, nullptr, nullptr, 0);
}

TEST_CASE("convert_to_f32 refuses integer dtypes, naming them") {
  const std::int32_t ints[2] = {1, 2};
  float out[2] = {};
  using mambakit::test::error_message;
  CHECK_THAT(error_message([&] { mambakit::convert_to_f32(DType::kI32, ints, out, 2); }), Contains("i32"));
  CHECK_THAT(error_message([&] { mambakit::convert_to_f32(DType::kI64, ints, out, 1); }), Contains("i64"));
}
