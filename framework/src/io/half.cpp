#include "mambakit/half.hpp"

#include <fmt/format.h>

#include <bit>
#include <cstring>

#include "mambakit/error.hpp"

namespace mambakit {

static_assert(std::endian::native == std::endian::little, "mambakit reads little-endian data in place");

namespace {

// Reads element i of an unaligned array of T.
template <class T>
T load(const unsigned char* bytes, std::int64_t i) {
  T value;
  std::memcpy(&value, bytes + i * static_cast<std::int64_t>(sizeof(T)), sizeof(T));
  return value;
}

}  // namespace

void convert_to_f32(sdk::DType from, const void* src, float* dst, std::int64_t count) {
  if (count < 0) {
    throw Error(fmt::format("convert_to_f32: negative element count {}", count));
  }
  const auto* bytes = static_cast<const unsigned char*>(src);
  switch (from) {
    case sdk::DType::kF32:
      if (count > 0) {
        std::memcpy(dst, src, static_cast<std::size_t>(count) * sizeof(float));
      }
      return;
    case sdk::DType::kF16:
      for (std::int64_t i = 0; i < count; ++i) {
        dst[i] = f16_to_f32(load<std::uint16_t>(bytes, i));
      }
      return;
    case sdk::DType::kBF16:
      for (std::int64_t i = 0; i < count; ++i) {
        dst[i] = bf16_to_f32(load<std::uint16_t>(bytes, i));
      }
      return;
    case sdk::DType::kF64:
      for (std::int64_t i = 0; i < count; ++i) {
        dst[i] = static_cast<float>(load<double>(bytes, i));
      }
      return;
    case sdk::DType::kI32:
    case sdk::DType::kI64:
    case sdk::DType::kI8:
    case sdk::DType::kQ8:
      break;
  }
  throw Error(fmt::format("convert_to_f32: cannot convert dtype {} (value {}) to f32; only f32, f16, bf16 and f64",
                          sdk::dtype_name(from), static_cast<int>(from)));
}

}  // namespace mambakit
