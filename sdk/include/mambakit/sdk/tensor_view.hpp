#pragma once
/// \file
/// TensorView: a non-owning, plain-data view of a strided tensor (DLPack's convention).

#include <cstdint>
#include <initializer_list>

#include "mambakit/sdk/dtype.hpp"

namespace mambakit::sdk {

/// Highest rank a TensorView can describe.
inline constexpr std::int32_t kMaxRank = 6;

/// A view of memory owned by someone else, valid for the duration of the call it is passed
/// to. Shape and strides count elements, not bytes; dimension 0 is the outermost. A view with
/// `data == nullptr` is "absent" and is how optional tensors are left out.
/// Plain data: copying a view never copies the tensor.
struct TensorView {
  void* data = nullptr;
  DType dtype = DType::kF32;
  Device device{};
  std::int32_t rank = 0;
  std::int64_t shape[kMaxRank] = {};
  std::int64_t strides[kMaxRank] = {};

  /// True when the view refers to memory (optional tensors are absent otherwise).
  [[nodiscard]] bool present() const noexcept { return data != nullptr; }

  /// Number of elements (1 for rank 0).
  [[nodiscard]] std::int64_t numel() const noexcept {
    std::int64_t count = 1;
    for (std::int32_t d = 0; d < rank; ++d) count *= shape[d];
    return count;
  }

  /// True when the strides are the row-major strides of the shape.
  [[nodiscard]] bool is_contiguous() const noexcept {
    std::int64_t expected = 1;
    for (std::int32_t d = rank - 1; d >= 0; --d) {
      if (shape[d] != 1 && strides[d] != expected) return false;
      expected *= shape[d];
    }
    return true;
  }

  /// The data pointer as `T*`. The caller is responsible for `T` matching `dtype`.
  template <class T>
  [[nodiscard]] T* as() const noexcept {
    return static_cast<T*>(data);
  }
};

/// A contiguous row-major view of `data` with `rank` extents from `shape` (rank is clamped
/// to kMaxRank).
inline TensorView make_view(void* data, DType dtype, Device device, const std::int64_t* shape,
                            std::int32_t rank) noexcept {
  TensorView view;
  view.data = data;
  view.dtype = dtype;
  view.device = device;
  view.rank = rank > kMaxRank ? kMaxRank : rank;
  std::int64_t stride = 1;
  for (std::int32_t d = view.rank - 1; d >= 0; --d) {
    view.shape[d] = shape[d];
    view.strides[d] = stride;
    stride *= shape[d];
  }
  return view;
}

/// A contiguous row-major view of `data` with the given shape.
inline TensorView make_view(void* data, DType dtype, Device device,
                            std::initializer_list<std::int64_t> shape) noexcept {
  return make_view(data, dtype, device, shape.begin(), static_cast<std::int32_t>(shape.size()));
}

/// A contiguous f32 CPU view, the common case in CPU plugins and tests.
inline TensorView make_view(float* data, std::initializer_list<std::int64_t> shape) noexcept {
  return make_view(data, DType::kF32, Device{}, shape);
}

/// A contiguous f64 CPU view (double-precision runs, e.g. gradient checks).
inline TensorView make_view(double* data, std::initializer_list<std::int64_t> shape) noexcept {
  return make_view(data, DType::kF64, Device{}, shape);
}

}  // namespace mambakit::sdk
