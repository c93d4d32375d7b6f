#pragma once
/// \file
/// Shape, dtype and device checks of TensorViews that produce a Status naming the tensor.
/// Used by the host's validating wrappers and available to plugins.

#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <initializer_list>

#include "mambakit/sdk/status.hpp"
#include "mambakit/sdk/tensor_view.hpp"

namespace mambakit::sdk {

/// Writes "(d0, d1, ...)" of `view` into `buffer`. Returns `buffer`.
inline const char* format_shape(const TensorView& view, char* buffer, std::size_t capacity) noexcept {
  std::size_t used = static_cast<std::size_t>(std::snprintf(buffer, capacity, "("));
  for (std::int32_t d = 0; d < view.rank && used < capacity; ++d) {
    used += static_cast<std::size_t>(std::snprintf(buffer + used, capacity - used, "%s%" PRId64,
                                                   d == 0 ? "" : ", ", view.shape[d]));
  }
  if (used < capacity) std::snprintf(buffer + used, capacity - used, ")");
  return buffer;
}

/// Checks that `view` is present, has exactly `shape`, element type `dtype`, lives on `device`
/// and has unit stride in its last dimension. `name` names the tensor in the message.
inline Status check_view(const TensorView& view, const char* name, DType dtype, Device device,
                         std::initializer_list<std::int64_t> shape) noexcept {
  char expected[96];
  char actual[96];
  TensorView wanted;
  wanted.rank = static_cast<std::int32_t>(shape.size());
  std::int32_t d = 0;
  for (std::int64_t extent : shape) wanted.shape[d++] = extent;
  if (!view.present()) {
    return Status::error(StatusCode::kInvalidArgument, "%s is missing (expected shape %s)", name,
                         format_shape(wanted, expected, sizeof expected));
  }
  bool same_shape = view.rank == wanted.rank;
  for (d = 0; same_shape && d < wanted.rank; ++d) same_shape = view.shape[d] == wanted.shape[d];
  if (!same_shape) {
    return Status::error(StatusCode::kInvalidArgument, "%s has shape %s but %s is expected", name,
                         format_shape(view, actual, sizeof actual),
                         format_shape(wanted, expected, sizeof expected));
  }
  if (view.dtype != dtype) {
    return Status::error(StatusCode::kInvalidArgument, "%s has dtype %s but %s is expected", name,
                         dtype_name(view.dtype), dtype_name(dtype));
  }
  if (!(view.device == device)) {
    return Status::error(StatusCode::kInvalidArgument, "%s is on %s:%d but the call runs on %s:%d",
                         name, device_type_name(view.device.type), view.device.index,
                         device_type_name(device.type), device.index);
  }
  if (view.rank > 0 && view.shape[view.rank - 1] > 1 && view.strides[view.rank - 1] != 1) {
    return Status::error(StatusCode::kInvalidArgument,
                         "%s has stride %" PRId64 " in its last dimension; 1 is required", name,
                         view.strides[view.rank - 1]);
  }
  return Status::success();
}

/// Like check_view(), but an absent view is accepted.
inline Status check_optional_view(const TensorView& view, const char* name, DType dtype, Device device,
                                  std::initializer_list<std::int64_t> shape) noexcept {
  if (!view.present()) return Status::success();
  return check_view(view, name, dtype, device, shape);
}

/// Like check_view() for a (d0, d1, d2, d3) view whose two inner dimensions must also be
/// contiguous: rows of d2 x d3 elements (a kernel's per-token rows of heads). With `optional`, an
/// absent view is accepted.
inline Status check_contiguous_rows(const TensorView& view, const char* name, DType dtype, Device device,
                                    std::int64_t d0, std::int64_t d1, std::int64_t d2, std::int64_t d3,
                                    bool optional) noexcept {
  if (optional && !view.present()) return Status::success();
  MAMBAKIT_RETURN_IF_ERROR(check_view(view, name, dtype, device, {d0, d1, d2, d3}));
  if (d2 > 1 && view.strides[2] != d3) {
    return Status::error(StatusCode::kInvalidArgument, "%s: its rows of %" PRId64 " x %" PRId64 " must be contiguous",
                         name, d2, d3);
  }
  return Status::success();
}

}  // namespace mambakit::sdk
