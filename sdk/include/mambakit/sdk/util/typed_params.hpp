#pragma once
// A component's parameters as plain arrays of its compute type T: f32 or f64 parameters are
// used in place; f16 and bf16 ones (inference with half-precision weights) are widened to f32
// into the call's workspace; int8 linear weights (kQ8, quantized.hpp) stay int8 and are read
// through linear() by linear.hpp's linear_forward. Parameters the caller reads in their stored type (the decode
// path's weight matrices, see few_rows.hpp) can be left out of the widening.

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "mambakit/sdk/quantized.hpp"
#include "mambakit/sdk/util/half_lanes.hpp"
#include "mambakit/sdk/status.hpp"
#include "mambakit/sdk/tensor_view.hpp"
#include "mambakit/sdk/workspace.hpp"

namespace mambakit::sdk::util {

template <class T>
constexpr sdk::DType dtype_of() {
  return sizeof(T) == sizeof(double) ? sdk::DType::kF64 : sdk::DType::kF32;
}

/// A linear weight (N, K) as a computation reads it: values of its compute type, or an int8
/// matrix (DType::kQ8), which linear_forward (linear.hpp) multiplies without widening it.
template <class T>
struct LinearWeight {
  const T* values = nullptr;
  const sdk::QuantizedMatrix* int8 = nullptr;
};

template <class T>
class TypedParams {
 public:
  /// `params`: `count` contiguous views; `component` names the caller in errors. The indices in
  /// `left_as_stored` get a null pointer when they would need widening (read them from their
  /// views instead).
  TypedParams(const sdk::Context& context, const sdk::TensorView* params, int count, const char* component,
              std::initializer_list<int> left_as_stored = {})
      : storage_(context, widened_elements(params, count, component, left_as_stored)), params_(params),
        pointers_(count, nullptr) {
    std::int64_t offset = 0;
    for (int i = 0; i < count; ++i) {
      const sdk::TensorView& view = params[i];
      if (view.dtype == dtype_of<T>()) {
        pointers_[i] = view.as<const T>();
      } else if (view.dtype != sdk::DType::kQ8 && !contains(left_as_stored, i)) {
        if constexpr (std::is_same_v<T, float>) {
          widen_to_f32(view, storage_.data() + offset, view.numel());
          pointers_[i] = storage_.data() + offset;
          offset += view.numel();
        }
      }
    }
  }

  /// Parameter `index` as T, or nullptr for an absent optional parameter (index -1) and for an
  /// int8 one (read it with linear()).
  const T* operator[](int index) const { return index < 0 ? nullptr : pointers_[static_cast<std::size_t>(index)]; }

  /// Parameter `index`, a linear weight: an int8 one (kQ8) as stored, the others as operator[].
  LinearWeight<T> linear(int index) const {
    const sdk::TensorView& view = params_[index];
    if (view.dtype == sdk::DType::kQ8) return {nullptr, view.as<const sdk::QuantizedMatrix>()};
    return {pointers_[static_cast<std::size_t>(index)], nullptr};
  }

 private:
  static bool contains(std::initializer_list<int> list, int value) {
    return std::find(list.begin(), list.end(), value) != list.end();
  }

  static std::int64_t widened_elements(const sdk::TensorView* params, int count, const char* component,
                                       std::initializer_list<int> left_as_stored) {
    std::int64_t total = 0;
    for (int i = 0; i < count; ++i) {
      const sdk::DType dtype = params[i].dtype;
      if (dtype == dtype_of<T>()) continue;
      const bool narrow = dtype == sdk::DType::kF16 || dtype == sdk::DType::kBF16 || dtype == sdk::DType::kQ8;
      if (!narrow || !std::is_same_v<T, float>) {
        throw std::invalid_argument(std::string(component) + ": parameter " + std::to_string(i) + " is " +
                                    sdk::dtype_name(dtype) + " in a " + sdk::dtype_name(dtype_of<T>()) +
                                    " computation; parameters must be f32, f16, bf16 or int8 with f32 activations, "
                                    "or all f64");
      }
      if (dtype != sdk::DType::kQ8 && !contains(left_as_stored, i)) total += params[i].numel();
    }
    return total;
  }

  sdk::WorkspaceArray<T> storage_;
  const sdk::TensorView* params_;
  std::vector<const T*> pointers_;
};

/// A backward pass needs parameters of its compute type: with `activations` f64 (gradient
/// checks) the typed path checks them; otherwise each of the `count` parameters must be f32
/// (f16 and bf16 weights are for inference). kInvalidArgument naming the parameter otherwise.
inline sdk::Status check_trainable(const char* component, const sdk::TensorView* params, int count,
                                   sdk::DType activations) {
  if (activations == sdk::DType::kF64) return sdk::Status::success();
  for (int i = 0; i < count; ++i) {
    if (params[i].dtype != sdk::DType::kF32) {
      return sdk::Status::error(sdk::StatusCode::kInvalidArgument,
                                "%s backward needs f32 parameters; parameter %d is %s (half-precision weights are "
                                "for inference)",
                                component, i, sdk::dtype_name(params[i].dtype));
    }
  }
  return sdk::Status::success();
}

}  // namespace mambakit::sdk::util
