#pragma once
// DeviceParameters: a CUDA device copy of a model's ParameterStore, block for block (the f32
// block and the 16-bit block), so each parameter keeps its dtype and offset. The host store
// stays the master copy (save, parameter_values); upload() copies it again after a change.

#include <cstdint>

#include "device_buffer.hpp"
#include "parameter_store.hpp"

namespace mambakit::cuda {

class DeviceParameters {
 public:
  /// Device memory for `store`'s blocks on `device`, filled by upload().
  DeviceParameters(const model::ParameterStore& store, sdk::Device device);

  /// Copies both host blocks to the device (synchronously). Throws on a CUDA failure.
  void upload();

  /// A view of parameter `index` in device memory, in the dtype the store holds it in.
  [[nodiscard]] sdk::TensorView view(int index) const;
  /// The device values of an f32 parameter (the norms).
  [[nodiscard]] const float* f32_data(int index) const;

 private:
  const model::ParameterStore& store_;
  sdk::Device device_;
  DeviceBuffer f32_;
  DeviceBuffer halves_;
};

}  // namespace mambakit::cuda
