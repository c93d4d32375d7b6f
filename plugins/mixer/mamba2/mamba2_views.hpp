#pragma once
// Views of the Mamba-2 mixer's buffers handed to the SSD kernel: x, B and C are column slices
// of the conv output xBC (M, C), and their gradients slices of its gradient.
//
// Dimensions: B batch, L length, H heads, P head_dim, G groups, N d_state, C conv_dim.

#include <cstdint>

#include "mamba2_layout.hpp"
#include "mambakit/sdk/ssd_kernel.hpp"
#include "mambakit/sdk/util/typed_params.hpp"

namespace mambakit::mixer_mamba2 {

/// A (batch, length, a, b) view of `data` whose (batch, length) rows are `row_stride` apart.
template <class T>
sdk::TensorView rows4(const T* data, std::int64_t batch, std::int64_t length, std::int64_t a, std::int64_t b,
                      std::int64_t row_stride) {
  sdk::TensorView view = sdk::make_view(const_cast<T*>(data), sdk::util::dtype_of<T>(), sdk::Device{},
                                        {batch, length, a, b});
  view.strides[1] = row_stride;
  view.strides[0] = length * row_stride;
  return view;
}

/// A contiguous view of `data`, absent when `data` is null.
template <class T>
sdk::TensorView contiguous(const T* data, std::initializer_list<std::int64_t> shape) {
  if (data == nullptr) return {};
  return sdk::make_view(const_cast<T*>(data), sdk::util::dtype_of<T>(), sdk::Device{}, shape);
}

/// The x, B and C slices of a (B, L, C) conv output (or of its gradient) `xbc`.
template <class T>
struct XbcViews {
  sdk::TensorView x, B, C;
  XbcViews(const T* xbc, const Mamba2Dims& d, std::int64_t batch, std::int64_t length) {
    const std::int64_t width = d.conv_dim(), gn = d.groups * d.d_state;
    x = rows4(xbc, batch, length, d.heads, d.head_dim, width);
    B = rows4(xbc + d.d_inner, batch, length, d.groups, d.d_state, width);
    C = rows4(xbc + d.d_inner + gn, batch, length, d.groups, d.d_state, width);
  }
};

}  // namespace mambakit::mixer_mamba2
