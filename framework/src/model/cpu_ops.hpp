#pragma once
// CpuOps: the backbone passes on the host (DeviceOps over the model's parameter store, its
// HeapWorkspace and backbone_kernels.hpp). Device memory is host memory: copies are memcpy,
// a forward writes its output straight into the result.

#include <vector>

#include "device_ops.hpp"

namespace mambakit::model {

class CpuOps final : public DeviceOps {
 public:
  explicit CpuOps(Model::Impl& impl) : impl_(impl) {}
  ~CpuOps() override;

  [[nodiscard]] sdk::Device device() const override { return {}; }
  void sync_parameters() override {}
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
  float* output(FloatTensor& result) override { return result.values.data(); }
  void finish_output(FloatTensor&, const float*) override {}
  sdk::TensorView parameter(int index) override;
  const float* parameter_f32(int index) override;
  float* gradient(int index) override;
  sdk::TensorView gradient_view(int index) override;
  void begin_gradients() override {}
  void end_gradients() override {}
  const std::vector<std::vector<sdk::TensorView>>& state_on_device(InferenceState& state) override;
  void embedding(const std::int32_t* ids, const sdk::TensorView& table, float* out, std::int64_t rows,
                 std::int64_t d_model) override;
  void rms_norm(const float* x, const float* weight, float* out, std::int64_t rows, std::int64_t d_model,
                double eps) override;
  void add(float* x, const float* y, std::int64_t count) override;
  void multiply(float* x, const float* y, std::int64_t count) override;
  void rms_norm_backward(const float* x, const float* weight, const float* grad_out, float* grad_x, float* grad_weight,
                         std::int64_t rows, std::int64_t d_model, double eps) override;
  void layer_norm(const float* x, const float* weight, const float* bias, float* out, std::int64_t rows,
                  std::int64_t d_model, double eps) override;
  void layer_norm_backward(const float* x, const float* weight, const float* grad_out, float* grad_x, float* grad_weight,
                           float* grad_bias, std::int64_t rows, std::int64_t d_model, double eps) override;
  void embedding_backward(const std::int32_t* ids, const float* grad_out, float* grad_table, std::int64_t rows,
                          std::int64_t d_model) override;
  double next_token_loss(const float* logits, const std::int32_t* ids, const std::int32_t* lengths,
                         const TokenBatch& tokens, std::int64_t vocab, float* grad) override;
  const std::int32_t* step_ids(const std::vector<std::int32_t>& ids) override { return ids.data(); }
  float* step_output(std::int64_t batch, std::int64_t count) override;
  void run_step(std::int64_t batch, InferenceState& state, const std::function<void()>& queue) override;
  std::vector<std::int32_t> argmax_rows(const float* logits, std::int64_t rows, std::int64_t stride,
                                        std::int64_t count) override;

 private:
  Model::Impl& impl_;
  std::vector<void*> taken_;                          // scratch of the current call
  std::vector<std::vector<sdk::TensorView>> states_;  // views of the last state_on_device()
  std::vector<float> step_output_;                    // a step's output when only its argmax leaves
};

}  // namespace mambakit::model
