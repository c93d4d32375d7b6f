#pragma once
// DeviceRuntime: how a Model runs on an accelerator. Model::Impl holds one when
// ModelOptions::device is not the CPU and forwards inference and training calls to it (through
// Impl::runtime(), which first re-uploads parameters the host has changed); the CPU path never
// touches it. The CUDA implementation lives in framework/src/cuda/ (built with CUDA only);
// without CUDA, create_cuda() throws a clear error.

#include <cstdint>
#include <memory>
#include <vector>

#include "mambakit/model.hpp"
#include "state_mirror.hpp"

namespace mambakit::model {

class DeviceRuntime {
 public:
  virtual ~DeviceRuntime() = default;

  /// A runtime for `impl` (its components already created, its parameters final) on CUDA
  /// device `device`: checks that every component declares CUDA, that the device exists, and
  /// uploads the parameters. Throws mambakit::Error naming the component or the device.
  static std::unique_ptr<DeviceRuntime> create_cuda(Model::Impl& impl, sdk::Device device);

  /// Copies the host parameter block to the device again (after load_weights(), or when the
  /// host values may have changed through parameter slices).
  virtual void upload_parameters() = 0;
  /// Model::forward on the device; the output is copied to the host.
  virtual FloatTensor forward(const TokenBatch& tokens, InferenceState* state, bool last_position_only) = 0;
  /// Model::step on the device (checked ids); the output is copied to the host.
  virtual FloatTensor step(const std::vector<std::int32_t>& ids, InferenceState& state) = 0;
  /// Model::step_argmax on the device: only the B ids come back.
  virtual std::vector<std::int32_t> step_argmax(const std::vector<std::int32_t>& ids, InferenceState& state) = 0;
  /// Model::accumulate_gradients on the device, for checked tokens of a causal-LM or
  /// classification model whose host gradient block exists: the loss's gradient is computed
  /// on the device, then ADDED to the host gradients; sets Impl::last_activation_bytes.
  /// Returns the loss. Throws mambakit::Error with the host gradients untouched on failure.
  virtual double accumulate_gradients(const TokenBatch& tokens, const TrainingTargets& targets, bool recompute) = 0;
  /// Model::evaluate_loss on the device (checked tokens, causal LM or classification).
  virtual double evaluate_loss(const TokenBatch& tokens, const TrainingTargets& targets) = 0;

 protected:
  using Impl = Model::Impl;
  using Mirror = InferenceState::DeviceMirror;
  using StateTensors = std::vector<std::vector<FloatTensor>>;

  /// The state's device mirror, current on the device: made with `make` when absent, uploaded
  /// when the host holds newer values. Marks the host stale (the caller writes the device copy).
  template <class Make>
  static Mirror& mirror_on_device(InferenceState& state, Make&& make) {
    if (!state.device_) {
      state.device_.reset(make(state.tensors_).release());
      state.device_current_ = false;
    }
    if (!state.device_current_) {
      state.sync_to_host();
      state.device_->upload(state.tensors_);
      state.device_current_ = true;
    }
    state.host_current_ = false;
    return *state.device_;
  }
  static void advance(InferenceState& state, std::int64_t tokens) { state.seqlen_offset_ += tokens; }
};

}  // namespace mambakit::model
