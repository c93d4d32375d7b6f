#pragma once
// DeviceState: an InferenceState's tensors in CUDA device memory, one f32 buffer with every
// tensor at a fixed offset (layer by layer, in declared order). The copies use the legacy
// default stream, which waits for (and is waited for by) the model's blocking stream, so
// upload() is ordered before the model's next call and download() after its last one.

#include <cstdint>
#include <vector>

#include "device_buffer.hpp"
#include "state_storage.hpp"

namespace mambakit::cuda {

class DeviceState final : public model::StateMirror {
 public:
  /// Device memory shaped like `tensors` on `device` (uninitialised until upload()).
  DeviceState(const std::vector<std::vector<FloatTensor>>& tensors, sdk::Device device);

  void download(std::vector<std::vector<FloatTensor>>& tensors) override;
  void upload(const std::vector<std::vector<FloatTensor>>& tensors) override;

  [[nodiscard]] sdk::Device device() const noexcept { return device_; }
  /// The start of the device memory (identifies the layout for CUDA graphs).
  [[nodiscard]] const void* base() const noexcept { return buffer_.data(); }
  /// Views of each layer's tensors in device memory.
  [[nodiscard]] const std::vector<std::vector<sdk::TensorView>>& views() const { return views_; }

 private:
  sdk::Device device_;
  DeviceBuffer buffer_;
  std::vector<std::vector<sdk::TensorView>> views_;
};

}  // namespace mambakit::cuda
