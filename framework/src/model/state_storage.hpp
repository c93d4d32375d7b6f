#pragma once
// What an InferenceState holds, framework-internal: each layer's state tensors on the host, and
// the copy a model on an accelerator keeps in its memory, with two flags saying which is newer.
// A device call makes the device copy current (uploading when needed) and leaves the host
// stale; host accessors download on demand; reset() and load() write the host and leave the
// device stale.

#include <memory>
#include <string>
#include <vector>

#include "mambakit/model.hpp"

namespace mambakit::model {

/// An accelerator's copy of a state's tensors (the CUDA one is cuda::DeviceState).
struct StateMirror {
  virtual ~StateMirror() = default;
  /// Copies the device values into `tensors` (same shapes as at creation), after every queued
  /// device work that writes them. Throws mambakit::Error on a device failure.
  virtual void download(std::vector<std::vector<FloatTensor>>& tensors) = 0;
  /// Copies `tensors` to the device, ordered before any later device work.
  virtual void upload(const std::vector<std::vector<FloatTensor>>& tensors) = 0;
};

/// The framework's access to an InferenceState's storage.
struct StateAccess {
  /// A zero state of `batch` rows with these tensors, names and token axes (-1 for a tensor
  /// whose size does not depend on the length; the others are made with room for no token).
  static InferenceState make(std::int64_t batch, std::vector<std::vector<FloatTensor>> tensors,
                             std::vector<std::vector<std::string>> names,
                             std::vector<std::vector<std::int32_t>> token_axes);
  /// The host tensors, current, for a call that writes them (a device copy becomes stale).
  static std::vector<std::vector<FloatTensor>>& host_tensors(InferenceState& state);
  /// The device copy, current on the device, for a call that writes it (the host becomes
  /// stale): made with `make(tensors)` when absent, uploaded when the host holds newer values.
  template <class Make>
  static StateMirror& mirror_on_device(InferenceState& state, Make&& make);
  /// Grows the tensors that hold tokens to room for at least `tokens` (keeping what they hold);
  /// a device copy is dropped when they grow.
  static void reserve(InferenceState& state, std::int64_t tokens);
  /// Per layer and tensor, the token axis, or -1 for a tensor whose size does not depend on it.
  static const std::vector<std::vector<std::int32_t>>& token_axes(const InferenceState& state);
  /// Every row has taken `tokens` more.
  static void advance(InferenceState& state, std::int64_t tokens);
};

}  // namespace mambakit::model

namespace mambakit {

struct InferenceState::Storage {
  std::vector<std::vector<FloatTensor>> tensors;
  std::vector<std::vector<std::string>> names;
  /// Per tensor, the axis that holds one entry per token (Mixer::state_token_axis()), or -1.
  std::vector<std::vector<std::int32_t>> token_axes;
  std::int64_t capacity = 0;            ///< tokens the tensors with a token axis have room for
  std::vector<std::int64_t> positions;  ///< per row, the tokens the state holds
  std::unique_ptr<model::StateMirror> device;  ///< a model on an accelerator's copy, or none
  bool host_current = true;                     ///< false while the device copy holds newer values
  bool device_current = false;                  ///< the device copy (when there is one) equals the host

  /// Makes the host tensors current (downloading them when the device holds newer values).
  void sync_to_host() {
    if (host_current) return;
    if (device) device->download(tensors);
    host_current = true;
  }
  /// The host tensors are about to be written: current on the host, stale on the device.
  void use_on_host() {
    sync_to_host();
    device_current = false;
  }
};

}  // namespace mambakit

namespace mambakit::model {

template <class Make>
StateMirror& StateAccess::mirror_on_device(InferenceState& state, Make&& make) {
  InferenceState::Storage& storage = state.storage();
  if (!storage.device) {
    storage.device = make(storage.tensors);
    storage.device_current = false;
  }
  if (!storage.device_current) {
    storage.sync_to_host();
    storage.device->upload(storage.tensors);
    storage.device_current = true;
  }
  storage.host_current = false;
  return *storage.device;
}

}  // namespace mambakit::model
