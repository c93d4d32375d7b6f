#pragma once
// Element access into TensorViews by (row, time, channel) using the views' strides.

#include <cstdint>

#include "mambakit/sdk/tensor_view.hpp"

namespace mambakit::scan_sequential {

/// A typed pointer plus strides for a rank-1..3 view; absent views give null.
template <class T>
struct Strided {
  T* data = nullptr;
  std::int64_t stride[3] = {0, 0, 0};

  Strided() = default;
  explicit Strided(const sdk::TensorView& view) : data(static_cast<T*>(view.data)) {
    for (std::int32_t d = 0; d < view.rank && d < 3; ++d) stride[d] = view.strides[d];
  }
  [[nodiscard]] bool present() const { return data != nullptr; }
  T& operator()(std::int64_t i) const { return data[i * stride[0]]; }
  T& operator()(std::int64_t i, std::int64_t j) const { return data[i * stride[0] + j * stride[1]]; }
  T& operator()(std::int64_t i, std::int64_t j, std::int64_t k) const {
    return data[i * stride[0] + j * stride[1] + k * stride[2]];
  }
};

}  // namespace mambakit::scan_sequential
