#pragma once
/// \file
/// Element types and devices that tensors crossing the plugin boundary may have.

#include <cstddef>
#include <cstdint>

namespace mambakit::sdk {

/// Element type of a tensor. Values are stable (append only).
enum class DType : std::int32_t {
  kF32 = 0,
  kF64 = 1,
  kF16 = 2,   ///< IEEE 754 binary16
  kBF16 = 3,  ///< bfloat16: the upper 16 bits of an f32
  kI32 = 4,
  kI64 = 5,
  kI8 = 6,  ///< signed 8-bit integer (a stored int8 weight; safetensors "I8")
  /// A linear weight held as int8 with f32 scales (quantized.hpp): `data` points to an
  /// sdk::QuantizedMatrix, and the view's shape is the matrix's (out, in). CPU only.
  kQ8 = 7,
};

/// Size in bytes of one element of `dtype`; 0 for an unknown value and for kQ8.
constexpr std::size_t dtype_size(DType dtype) noexcept {
  switch (dtype) {
    case DType::kF32: return 4;
    case DType::kF64: return 8;
    case DType::kF16: return 2;
    case DType::kBF16: return 2;
    case DType::kI32: return 4;
    case DType::kI64: return 8;
    case DType::kI8: return 1;
    case DType::kQ8: return 0;  // not an array of elements: see QuantizedMatrix
  }
  return 0;
}

/// Short lower-case name ("f32", "bf16", ...). Static storage.
constexpr const char* dtype_name(DType dtype) noexcept {
  switch (dtype) {
    case DType::kF32: return "f32";
    case DType::kF64: return "f64";
    case DType::kF16: return "f16";
    case DType::kBF16: return "bf16";
    case DType::kI32: return "i32";
    case DType::kI64: return "i64";
    case DType::kI8: return "i8";
    case DType::kQ8: return "int8";
  }
  return "unknown";
}

/// Bit of `dtype` in a capability mask (see ScanCapabilities::dtypes).
constexpr std::uint32_t dtype_bit(DType dtype) noexcept {
  return 1u << static_cast<std::uint32_t>(dtype);
}

/// Kind of memory a tensor lives in. Values are stable (append only).
enum class DeviceType : std::int32_t {
  kCpu = 0,
  kCuda = 1,
};

/// Bit of `type` in a capability mask (see ScanCapabilities::devices).
constexpr std::uint32_t device_bit(DeviceType type) noexcept {
  return 1u << static_cast<std::uint32_t>(type);
}

/// Short lower-case name ("cpu", "cuda"). Static storage.
constexpr const char* device_type_name(DeviceType type) noexcept {
  switch (type) {
    case DeviceType::kCpu: return "cpu";
    case DeviceType::kCuda: return "cuda";
  }
  return "unknown";
}

/// A device: its type and, for accelerators, its ordinal (0 for the CPU).
struct Device {
  DeviceType type = DeviceType::kCpu;
  std::int32_t index = 0;

  friend constexpr bool operator==(Device, Device) = default;
};

}  // namespace mambakit::sdk
