#pragma once
// The choice of a CPU computation's element type from a tensor's dtype: double for f64 problems,
// float for the others (f32, and parameters that TypedParams widens to f32), run inside
// sdk::guard so that an exception becomes a Status.

#include <type_traits>

#include "mambakit/sdk/dtype.hpp"
#include "mambakit/sdk/guard.hpp"
#include "mambakit/sdk/status.hpp"

namespace mambakit::sdk::util {

/// Runs body(T{}) with T = double when `dtype` is kF64 and T = float otherwise, inside
/// sdk::guard. Returns what body returns when that is a Status, success when it returns nothing,
/// and the guard's Status when it throws.
template <class Body>
sdk::Status by_dtype(sdk::DType dtype, Body&& body) noexcept {
  return sdk::guard([&]() -> sdk::Status {
    auto run = [&](auto zero) -> sdk::Status {
      if constexpr (std::is_void_v<decltype(body(zero))>) {
        body(zero);
        return sdk::Status::success();
      } else {
        return body(zero);
      }
    };
    if (dtype == sdk::DType::kF64) return run(double{});
    return run(float{});
  });
}

}  // namespace mambakit::sdk::util
