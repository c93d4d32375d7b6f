#pragma once
// CudaOps: the backbone passes on a CUDA device (DeviceOps). The embedding, norms and residual
// adds run as the framework's device kernels (device_kernels.cu), the next-token loss as
// loss_kernels.cu; the mixers and the head run their plugins' device paths; everything is
// queued on one stream the model owns, with one DeviceArena as the workspace of every call and
// the home of the activations.
//
// Memory: parameters in a DeviceParameters copy of the host store (uploaded at creation and by
// sync_parameters() when the host values are newer); per call, activations and plugin scratch
// from the arena (reset by begin()); the inference state in a DeviceState mirror that the
// InferenceState owns; per decode batch size, fixed buffers for the step's input ids and
// output, which the step's CUDA graphs bake in; for training, a DeviceGradients block (made on
// the first training call), zeroed per call and added to the host gradients at its end.
// Decode: with ModelOptions::cuda_graphs the step is captured once per (batch, state, kernel
// selection) after an uncaptured warm-up and replayed.

#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "cuda_stream.hpp"
#include "device_arena.hpp"
#include "device_gradients.hpp"
#include "device_ops.hpp"
#include "device_parameters.hpp"
#include "step_graphs.hpp"

namespace mambakit::cuda {

class DeviceState;

class CudaOps final : public model::DeviceOps {
 public:
  /// Uploads `impl`'s parameters to `device` (which must exist).
  CudaOps(Model::Impl& impl, sdk::Device device);

  [[nodiscard]] sdk::Device device() const override { return device_; }
  std::shared_ptr<void> use_device() override;
  void sync_parameters() override;
  void begin() override;
  sdk::Context context() override;
  void* scratch(std::size_t bytes, const char* what) override;
  void release(void* data) override;
  void to_device(void* device_memory, const void* host_memory, std::size_t bytes) override;
  void to_host(void* host_memory, const void* device_memory, std::size_t bytes) override;
  void copy(void* destination, const void* source, std::size_t bytes) override;
  void copy_rows(void* destination, std::size_t destination_pitch, const void* source, std::size_t source_pitch,
                 std::size_t row_bytes, std::int64_t rows) override;
  void zero(void* memory, std::size_t bytes) override;
  float* output(FloatTensor& result) override;
  void finish_output(FloatTensor& result, const float* device_output) override;
  sdk::TensorView parameter(int index) override;
  const float* parameter_f32(int index) override;
  float* gradient(int index) override;
  sdk::TensorView gradient_view(int index) override;
  void begin_gradients() override;
  void end_gradients() override;
  const std::vector<std::vector<sdk::TensorView>>& state_on_device(InferenceState& state) override;
  void embedding(const std::int32_t* ids, const sdk::TensorView& table, float* out, std::int64_t rows,
                 std::int64_t d_model) override;
  void rms_norm(const float* x, const float* weight, float* out, std::int64_t rows, std::int64_t d_model,
                double eps) override;
  void add(float* x, const float* y, std::int64_t count) override;
  void multiply(float* x, const float* y, std::int64_t count) override;
  void rms_norm_backward(const float* x, const float* weight, const float* grad_out, float* grad_x, float* grad_weight,
                         std::int64_t rows, std::int64_t d_model, double eps) override;
  void embedding_backward(const std::int32_t* ids, const float* grad_out, float* grad_table, std::int64_t rows,
                          std::int64_t d_model) override;
  double next_token_loss(const float* logits, const std::int32_t* ids, const std::int32_t* lengths,
                         const TokenBatch& tokens, std::int64_t vocab, float* grad) override;
  const std::int32_t* step_ids(const std::vector<std::int32_t>& ids) override;
  float* step_output(std::int64_t batch, std::int64_t count) override;
  void run_step(std::int64_t batch, InferenceState& state, const std::function<void()>& queue) override;
  std::vector<std::int32_t> argmax_rows(const float* logits, std::int64_t rows, std::int64_t stride,
                                        std::int64_t count) override;

 private:
  /// A decode batch size's fixed input and output, at addresses the step's graphs bake in.
  struct StepBuffers {
    DeviceBuffer ids;
    DeviceBuffer output;
    std::vector<std::int32_t> ids_on_device;  ///< what `ids` holds (empty: unknown)
  };
  StepBuffers& step_buffers(std::int64_t batch);

  Model::Impl& impl_;
  sdk::Device device_;
  Stream stream_;
  DeviceArena arena_;
  DeviceParameters parameters_;
  std::unique_ptr<DeviceGradients> gradients_;
  std::map<std::int64_t, StepBuffers> step_buffers_;
  const DeviceState* state_ = nullptr;  ///< the state of the last state_on_device()
  StepGraphs graphs_;  // last: its graphs are destroyed before the memory they refer to
};

}  // namespace mambakit::cuda
