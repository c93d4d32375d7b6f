#pragma once
/// \file
/// Int8 linear weights: QuantizedMatrix, what a parameter of DType::kQ8 points to, and the
/// scheme that fills it: symmetric int8 per group of `group_size` inputs of a row, one f32
/// scale per group (scale = max |w| / 127, q = round-to-nearest-even(w / scale)), the
/// layout of `mambakit quantize` checkpoints (`<name>` I8 (out, in) and `<name>_scale` F32
/// (out, groups)). The decode kernels quantize their input rows by the same rule
/// (sdk/util/int8_rows.hpp).

#include <cmath>
#include <cstdint>

namespace mambakit::sdk {

/// The group sizes a QuantizedMatrix may have (inputs per scale).
inline constexpr std::int64_t kQuantGroupSizes[] = {32, 64, 128};
/// A quantized row occupies a multiple of this many bytes in memory (the kernels read whole
/// 64-byte blocks); the bytes past `cols` are zero.
inline constexpr std::int64_t kQuantRowAlign = 64;

/// True when `group_size` is one of kQuantGroupSizes.
constexpr bool valid_quant_group_size(std::int64_t group_size) noexcept {
  for (std::int64_t allowed : kQuantGroupSizes) {
    if (group_size == allowed) return true;
  }
  return false;
}

/// Groups of `group_size` in a row of `cols` inputs (the last may be partial).
constexpr std::int64_t quant_groups(std::int64_t cols, std::int64_t group_size) noexcept {
  return (cols + group_size - 1) / group_size;
}

/// Bytes of one quantized row of `cols` inputs in memory.
constexpr std::int64_t quant_row_stride(std::int64_t cols) noexcept {
  return (cols + kQuantRowAlign - 1) / kQuantRowAlign * kQuantRowAlign;
}

/// A (rows, cols) weight matrix W held as int8:
///   W[n][k] = values[n * row_stride + k] * scales[n * groups + k / group_size].
/// Plain data, owned by the host; a TensorView of dtype kQ8 points to one and has the shape
/// (rows, cols).
struct QuantizedMatrix {
  std::uint32_t struct_size = sizeof(QuantizedMatrix);
  std::int64_t rows = 0;
  std::int64_t cols = 0;
  std::int64_t group_size = 0;          ///< one of kQuantGroupSizes
  std::int64_t groups = 0;              ///< quant_groups(cols, group_size)
  std::int64_t row_stride = 0;          ///< quant_row_stride(cols); bytes [cols, row_stride) are 0
  const std::int8_t* values = nullptr;  ///< rows x row_stride, each in [-127, 127]
  const float* scales = nullptr;        ///< rows x groups, finite and >= 0
};

/// Quantizes `cols` values of one row: values[0, cols) and scales[0, groups). Non-finite input
/// gives a non-finite scale (callers check their weights first).
inline void quantize_row(const float* row, std::int64_t cols, std::int64_t group_size, std::int8_t* values,
                         float* scales) noexcept {
  for (std::int64_t start = 0, g = 0; start < cols; start += group_size, ++g) {
    const std::int64_t end = start + group_size < cols ? start + group_size : cols;
    float largest = 0.0f;
    for (std::int64_t k = start; k < end; ++k) largest = std::fmax(largest, std::fabs(row[k]));
    const float scale = largest / 127.0f;
    scales[g] = scale;
    for (std::int64_t k = start; k < end; ++k) {
      const float q = scale > 0.0f ? std::nearbyint(row[k] / scale) : 0.0f;
      values[k] = static_cast<std::int8_t>(q > 127.0f ? 127.0f : (q < -127.0f ? -127.0f : q));
    }
  }
}

/// The f32 values of row `n` of `matrix` (cols of them) into `out`.
inline void dequantize_row(const QuantizedMatrix& matrix, std::int64_t n, float* out) noexcept {
  const std::int8_t* values = matrix.values + n * matrix.row_stride;
  const float* scales = matrix.scales + n * matrix.groups;
  for (std::int64_t g = 0; g < matrix.groups; ++g) {
    const std::int64_t start = g * matrix.group_size;
    const std::int64_t end = start + matrix.group_size < matrix.cols ? start + matrix.group_size : matrix.cols;
    const float scale = scales[g];
    for (std::int64_t k = start; k < end; ++k) out[k] = static_cast<float>(values[k]) * scale;
  }
}

}  // namespace mambakit::sdk
