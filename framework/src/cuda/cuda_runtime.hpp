#pragma once
// CudaRuntime: a model on a CUDA device (DeviceRuntime::create_cuda). The embedding, norms and
// residual adds run as the framework's device kernels (device_kernels.cu), the mixers and the
// head through their plugins' device paths, all queued on one stream the model owns, with one
// DeviceArena as the workspace of every call and the home of the activations. Inference is
// defined in cuda_runtime.cpp, training in cuda_training.cpp.
//
// Memory: parameters in a DeviceParameters copy of the host store (uploaded at creation and
// whenever Model::Impl::runtime() finds the host values newer); per call, activations and
// plugin scratch from the arena (reset at the start of each call); the inference state in a
// DeviceState mirror that the InferenceState owns; per decode batch size, fixed buffers for
// the step's input ids and output logits; for training, a DeviceGradients block (made on the
// first training call). Each call waits for its results (the copy to the host) before
// returning.
// Decode: with ModelOptions::cuda_graphs the step (embedding of the ids already on the device
// -> layers -> norm_f -> head) is captured once per (batch, state, kernel selection) and replayed.

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cuda_stream.hpp"
#include "device_arena.hpp"
#include "device_gradients.hpp"
#include "device_parameters.hpp"
#include "device_runtime.hpp"
#include "step_graphs.hpp"

namespace mambakit::cuda {

class DeviceState;

/// A device view of `data` (contiguous, row-major).
inline sdk::TensorView device_view(const void* data, sdk::DType dtype, sdk::Device device,
                                   const std::vector<std::int64_t>& shape) {
  return sdk::make_view(const_cast<void*>(data), dtype, device, shape.data(), static_cast<std::int32_t>(shape.size()));
}

/// The product of the extents.
inline std::int64_t numel_of(const std::vector<std::int64_t>& shape) {
  std::int64_t count = 1;
  for (auto extent : shape) count *= extent;
  return count;
}

class CudaRuntime final : public model::DeviceRuntime {
 public:
  /// Uploads `impl`'s parameters to `device` (current) and makes the views its calls use.
  CudaRuntime(Impl& impl, sdk::Device device);

  void upload_parameters() override;
  FloatTensor forward(const TokenBatch& tokens, InferenceState* state, bool last_position_only) override;
  FloatTensor step(const std::vector<std::int32_t>& ids, InferenceState& state) override;
  std::vector<std::int32_t> step_argmax(const std::vector<std::int32_t>& ids, InferenceState& state) override;
  double accumulate_gradients(const TokenBatch& tokens, const TrainingTargets& targets, bool recompute) override;
  double evaluate_loss(const TokenBatch& tokens, const TrainingTargets& targets) override;

 private:
  /// A decode batch size's fixed input and output: ids (B) i32 and logits (the head's output
  /// for (B, 1)), at addresses the step's graphs bake in.
  struct StepBuffers {
    DeviceBuffer ids;
    DeviceBuffer logits;
    std::vector<std::int64_t> logits_shape;
    std::vector<std::int32_t> ids_on_device;  ///< what `ids` holds (empty: unknown)
  };
  /// What a training or evaluation pass keeps on the device (cuda_training.cpp).
  struct TrainingPass;
  enum class PassKind { kEvaluate, kTrain, kTrainRecompute };

  /// The rows of an inference pass (forward or step), d_model wide, in the arena.
  struct Activations {
    float* hidden;
    float* normed;
    float* mixed;
  };

  /// Takes `rows` rows of each Activations buffer from the arena and queues the embedding of
  /// `ids` (rows, i32 on the device) into `hidden`.
  Activations embed(const std::int32_t* ids, std::int64_t rows);
  /// Layer `layer`'s mixer forward from `normed` into `mixed` (both `shape`), saving into
  /// `saved` (empty: nothing saved), from and into the given states (null: none).
  void queue_mixer_forward(const sdk::Context& ctx, std::size_t layer, const float* normed, float* mixed,
                           const std::vector<std::int64_t>& shape, const std::vector<sdk::TensorView>& saved,
                           const sdk::TensorView* initial_state = nullptr, const sdk::TensorView* final_state = nullptr);
  /// The context of a call: this device, stream and arena, and the model's kernel choice.
  sdk::Context context();
  DeviceState& state_on_device(InferenceState& state);
  std::vector<std::int64_t> head_output_shape(std::int64_t batch, std::int64_t length) const;
  /// The head's forward pass from `normed` (B, L, D), the final norm's output, into `output`
  /// (shaped `output_shape`); lengths (B) i32 on the device or nullptr.
  void head_forward(const sdk::Context& ctx, const float* normed, std::int64_t batch, std::int64_t length,
                    const std::int32_t* lengths, float* output, const std::vector<std::int64_t>& output_shape);
  /// norm_f of hidden (B, L, D) into `normed` (B*L*D scratch), then the head into `output`.
  void run_head(const sdk::Context& ctx, const float* hidden, std::int64_t batch, std::int64_t length,
                const std::int32_t* lengths, float* normed, float* output, const std::vector<std::int64_t>& output_shape);
  StepBuffers& step_buffers(std::int64_t batch);
  StepBuffers& queue_step(const std::vector<std::int32_t>& ids, InferenceState& state);
  void queue_step_body(const sdk::Context& ctx, std::int64_t B, StepBuffers& io, DeviceState& device_state);

  // Training (cuda_training.cpp).
  TrainingPass queue_training_forward(const TokenBatch& tokens, PassKind kind, std::uint64_t dropout_seed);
  double compute_loss(TrainingPass& pass, const TokenBatch& tokens, const TrainingTargets& targets, float* grad_output);
  void queue_backward(TrainingPass& pass, const float* grad_output, bool recompute);
  std::vector<sdk::TensorView> take_saved(std::size_t layer, std::int64_t batch, std::int64_t length);
  void release_saved(const std::vector<sdk::TensorView>& saved);

  Impl& impl_;
  sdk::Device device_;
  Stream stream_;
  DeviceArena arena_;
  DeviceParameters parameters_;
  sdk::TensorView embedding_;
  std::vector<const float*> norms_;
  const float* norm_f_ = nullptr;
  std::vector<std::vector<sdk::TensorView>> mixer_params_;
  std::vector<std::string> mixer_owners_;
  std::vector<sdk::TensorView> head_params_;
  std::string head_owner_;
  std::map<std::int64_t, StepBuffers> step_buffers_;
  std::unique_ptr<DeviceGradients> gradients_;
  StepGraphs graphs_;  // last: its graphs are destroyed before the memory they refer to
};

}  // namespace mambakit::cuda
