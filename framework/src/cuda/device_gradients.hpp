#pragma once
// DeviceGradients: the gradients of a CUDA model's training call, in one device block laid out
// like the host store's gradient block (each parameter at its offset in the f32 block). A call
// zeroes it, accumulates into it on the device, then adds it to the host gradients, which stay
// the ones the optimizer reads (and which accumulate across calls, as on the CPU).

#include <cstdint>
#include <vector>

#include "device_buffer.hpp"
#include "parameter_store.hpp"

namespace mambakit::cuda {

class DeviceGradients {
 public:
  /// A block for `store`'s f32 parameters on `device` (the current device), uninitialised.
  /// Throws on a CUDA failure.
  DeviceGradients(model::ParameterStore& store, sdk::Device device);

  /// Queues the zeroing of the whole block on `stream`.
  void zero(cudaStream_t stream);
  /// A device view of parameter `index`'s gradient (f32, the parameter's shape).
  [[nodiscard]] sdk::TensorView view(int index) const;
  /// The device gradient of parameter `index`.
  [[nodiscard]] float* data(int index) const;

  /// Copies the block to the host once the work queued on `stream` is done, then adds it to the
  /// store's host gradient block (which must exist). Throws on a CUDA failure before touching
  /// the host gradients.
  void add_to_host(cudaStream_t stream);

 private:
  model::ParameterStore& store_;
  sdk::Device device_;
  DeviceBuffer block_;
  std::vector<float> downloaded_;
};

}  // namespace mambakit::cuda
