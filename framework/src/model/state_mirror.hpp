#pragma once
// The device copy of an InferenceState, made by a CUDA model's runtime. The state keeps two
// flags: host_current_ (the host tensors hold the newest values) and device_current_ (the
// device copy does). A device call makes the device copy current (uploading when needed) and
// leaves the host stale; host accessors download on demand; reset() and load() write the host
// and leave the device stale.

#include <vector>

#include "mambakit/model.hpp"

namespace mambakit {

struct InferenceState::DeviceMirror {
  virtual ~DeviceMirror() = default;
  /// Copies the device values into `tensors` (same shapes as at creation), after every
  /// queued device work that writes them. Throws mambakit::Error on a CUDA failure.
  virtual void download(std::vector<std::vector<FloatTensor>>& tensors) = 0;
  /// Copies `tensors` to the device, ordered before any later device work.
  virtual void upload(const std::vector<std::vector<FloatTensor>>& tensors) = 0;
};

}  // namespace mambakit
