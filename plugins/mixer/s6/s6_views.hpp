#pragma once
// Helpers shared by the S6 forward, backward and step (CPU and CUDA): the views of projection
// outputs handed to the scan, and A. Templated on the compute type T (float, or double).
//
// Dimensions: B batch, L length, E d_inner, N d_state.

#include <algorithm>
#include <cstdint>

#include "mambakit/sdk/tensor_view.hpp"
#include "mambakit/sdk/util/simd.hpp"
#include "mambakit/sdk/util/typed_params.hpp"

namespace mambakit::mixer_s6 {

/// A contiguous view of `data` (memory of `device`, the CPU by default) with the given shape,
/// typed by T.
template <class T>
sdk::TensorView typed_view(const T* data, std::initializer_list<std::int64_t> shape, sdk::Device device = {}) {
  return sdk::make_view(const_cast<T*>(data), sdk::util::dtype_of<T>(), device, shape);
}

/// A (rows, width) view of `data` whose rows are `row_stride` elements apart.
template <class T>
sdk::TensorView rows_view(const T* data, std::int64_t rows, std::int64_t width, std::int64_t row_stride,
                          sdk::Device device = {}) {
  sdk::TensorView view = typed_view(data, {rows, width}, device);
  view.strides[0] = row_stride;
  return view;
}

/// A strided (rows, length, width) view into a row-major buffer whose rows are `row_stride`
/// elements apart: how B, C and z (and their gradients) are sliced out of wider projections
/// without copies.
template <class T>
sdk::TensorView strided_view(const T* data, std::int64_t batch, std::int64_t length, std::int64_t width,
                             std::int64_t row_stride, sdk::Device device = {}) {
  sdk::TensorView view = typed_view(data, {batch, length, width}, device);
  view.strides[0] = length * row_stride;
  view.strides[1] = row_stride;
  return view;
}

/// A (size) view of `data`, absent when `data` is null.
template <class T>
sdk::TensorView vector_view(const T* data, std::int64_t size, sdk::Device device = {}) {
  return data == nullptr ? sdk::TensorView{} : typed_view(data, {size}, device);
}

/// A = -exp(A_log), (E, N), a SIMD vector at a time.
template <class T>
void negative_exp(const T* a_log, T* a, std::int64_t count) {
  constexpr int kWidth = sdk::simd::kWidth<T>;
  for (std::int64_t i = 0; i < count; i += kWidth) {
    const int lanes = static_cast<int>(std::min<std::int64_t>(kWidth, count - i));
    sdk::simd::store(a + i, -sdk::simd::exp(sdk::simd::load(a_log + i, lanes)), lanes);
  }
}

}  // namespace mambakit::mixer_s6
