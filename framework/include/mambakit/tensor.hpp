#pragma once
/// \file
/// Small owning host tensors for the library API: token batches and f32 results.

#include <cstdint>
#include <vector>

namespace mambakit {

/// A dense row-major f32 tensor on the host.
struct FloatTensor {
  std::vector<std::int64_t> shape;
  std::vector<float> values;

  FloatTensor() = default;
  explicit FloatTensor(std::vector<std::int64_t> shape_) : shape(std::move(shape_)) {
    std::int64_t count = 1;
    for (auto extent : shape) count *= extent;
    values.assign(static_cast<std::size_t>(count), 0.0f);
  }
  [[nodiscard]] std::int64_t numel() const { return static_cast<std::int64_t>(values.size()); }
};

/// Token ids of `batch` rows of `length` tokens each, row-major.
struct TokenBatch {
  std::int64_t batch = 0;
  std::int64_t length = 0;
  std::vector<std::int32_t> ids;
  /// Optional: valid tokens per row when rows are right-padded (pooling heads and losses
  /// ignore the padding); empty means every row is `length` long.
  std::vector<std::int32_t> lengths = {};
};

}  // namespace mambakit
