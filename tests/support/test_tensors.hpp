#pragma once
// Tensors that a test owns for a component it calls directly: a named vector of T shaped as a
// spec declares it (parameters, state, saved activations), and the views it passes. T is float
// or double, whatever dtype the spec declares.

#include <cstdint>
#include <string>
#include <vector>

#include "mambakit/sdk/tensor_spec.hpp"
#include "mambakit/sdk/tensor_view.hpp"

namespace mambakit::test {

/// kF64 for double, kF32 for float.
template <class T>
constexpr sdk::DType dtype_of() {
  return sizeof(T) == sizeof(double) ? sdk::DType::kF64 : sdk::DType::kF32;
}

template <class T>
struct Tensor {
  std::string name;
  std::vector<std::int64_t> shape;
  std::vector<T> values;

  [[nodiscard]] sdk::TensorView view() {
    return sdk::make_view(values.data(), dtype_of<T>(), sdk::Device{}, shape.data(),
                          static_cast<std::int32_t>(shape.size()));
  }
};

/// A zero tensor as `spec` declares it, with element type T whatever the declared dtype.
template <class T>
Tensor<T> make_tensor(const sdk::TensorSpec& spec) {
  Tensor<T> tensor{spec.name, std::vector<std::int64_t>(spec.shape, spec.shape + spec.rank), {}};
  tensor.values.assign(static_cast<std::size_t>(spec.numel()), T(0));
  return tensor;
}

/// The views of `tensors`, in order.
template <class T>
std::vector<sdk::TensorView> views(std::vector<Tensor<T>>& tensors) {
  std::vector<sdk::TensorView> result;
  for (auto& tensor : tensors) result.push_back(tensor.view());
  return result;
}

}  // namespace mambakit::test
