#pragma once
// Contiguous f32 TensorViews of host memory.

#include <cstdint>
#include <vector>

#include "mambakit/sdk/tensor_view.hpp"

namespace mambakit::model {

/// A contiguous row-major f32 CPU view of `data` with `shape`.
inline sdk::TensorView contiguous_view(const float* data, const std::vector<std::int64_t>& shape) {
  return sdk::make_view(const_cast<float*>(data), sdk::DType::kF32, sdk::Device{}, shape.data(),
                        static_cast<std::int32_t>(shape.size()));
}

}  // namespace mambakit::model
