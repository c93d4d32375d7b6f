#pragma once
// Helpers shared by the S6 forward, backward and step: parameter pointers and the views of
// projection outputs handed to the scan.
//
// Dimensions: B batch, L length, E d_inner, N d_state.

#include <cmath>
#include <cstdint>

#include "mambakit/sdk/tensor_view.hpp"

namespace mambakit::mixer_s6 {

/// Parameter `index` of `params` as f32, or nullptr for an absent optional parameter (-1).
inline const float* param(const sdk::TensorView* params, int index) {
  return index < 0 ? nullptr : params[index].as<const float>();
}

/// A strided (rows, length, width) view into a row-major buffer whose rows are `row_stride`
/// elements apart: how B, C and z (and their gradients) are sliced out of wider projections
/// without copies.
inline sdk::TensorView strided_view(const float* data, std::int64_t batch, std::int64_t length, std::int64_t width,
                                    std::int64_t row_stride) {
  sdk::TensorView view = sdk::make_view(const_cast<float*>(data), {batch, length, width});
  view.strides[0] = length * row_stride;
  view.strides[1] = row_stride;
  return view;
}

/// A (size) view of `data`, absent when `data` is null.
inline sdk::TensorView vector_view(const float* data, std::int64_t size) {
  return data == nullptr ? sdk::TensorView{} : sdk::make_view(const_cast<float*>(data), {size});
}

/// A = -exp(A_log), (E, N).
inline void negative_exp(const float* a_log, float* a, std::int64_t count) {
  for (std::int64_t i = 0; i < count; ++i) a[i] = -std::exp(a_log[i]);
}

}  // namespace mambakit::mixer_s6
