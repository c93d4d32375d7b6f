#pragma once
// DeviceOps: what the backbone passes (backbone_passes.cpp) need from the device a model runs
// on. The passes, embedding -> blocks (RMSNorm, mixer, residual) -> final RMSNorm -> head, and
// their backward, are written once over this interface; CpuOps (cpu_ops.hpp) runs them on the
// host, CudaOps (framework/src/cuda/cuda_ops.hpp, CUDA builds only) on a CUDA device.
//
// Memory: scratch() hands out memory of the device for the current call (begin() releases what
// earlier calls took); the passes copy inputs in with to_device() and results out with
// to_host() / output(). Every pointer the passes give these methods is memory of the device.
// Dimensions: M rows (batch x length), D d_model, V vocabulary rows.

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "mambakit/model.hpp"
#include "mambakit/sdk/context.hpp"
#include "mambakit/sdk/tensor_view.hpp"

namespace mambakit::model {

class DeviceOps {
 public:
  virtual ~DeviceOps() = default;

  [[nodiscard]] virtual sdk::Device device() const = 0;

  /// Makes this device current for the calling thread until the returned object is destroyed
  /// (the previous one current again); the passes hold it for a whole call. Nothing on the CPU.
  [[nodiscard]] virtual std::shared_ptr<void> use_device() { return nullptr; }
  /// Makes the device's copy of the parameters equal the host store's values (after the host
  /// changed them); nothing on the CPU, whose copy is the store.
  virtual void sync_parameters() = 0;
  /// Starts a model call: the scratch of earlier calls is released.
  virtual void begin() = 0;
  /// The context the components' calls get: device, stream, workspace, threads and kernels.
  virtual sdk::Context context() = 0;
  /// `bytes` of the device's memory for this call, uninitialised; `what` names it in errors.
  virtual void* scratch(std::size_t bytes, const char* what) = 0;
  /// Gives back scratch before the call ends, in the reverse order of taking it.
  virtual void release(void* data) = 0;
  template <class T>
  T* take(std::int64_t count, const char* what) {
    return static_cast<T*>(scratch(static_cast<std::size_t>(count) * sizeof(T), what));
  }

  /// Copies between host and device memory (to_host waits for the device's queued work).
  virtual void to_device(void* device_memory, const void* host_memory, std::size_t bytes) = 0;
  virtual void to_host(void* host_memory, const void* device_memory, std::size_t bytes) = 0;
  /// Device to device.
  virtual void copy(void* destination, const void* source, std::size_t bytes) = 0;
  /// `rows` rows of `row_bytes` from `source` (a row every `source_pitch` bytes) to
  /// `destination` (every `destination_pitch` bytes), device to device.
  virtual void copy_rows(void* destination, std::size_t destination_pitch, const void* source,
                         std::size_t source_pitch, std::size_t row_bytes, std::int64_t rows) = 0;
  virtual void zero(void* memory, std::size_t bytes) = 0;
  /// Device memory for a call's output of `result`'s size: the CPU writes `result` itself.
  virtual float* output(FloatTensor& result) = 0;
  /// Makes `result` hold what was written to `output(result)`.
  virtual void finish_output(FloatTensor& result, const float* device_output) = 0;

  /// Parameter `index` of the model's store, in the dtype it is held in; the f32 data of one
  /// held as f32 (the norms).
  virtual sdk::TensorView parameter(int index) = 0;
  virtual const float* parameter_f32(int index) = 0;
  /// The gradient of parameter `index`, accumulated between begin_gradients() and
  /// end_gradients(), which adds what the device gathered to the model's host gradients.
  virtual float* gradient(int index) = 0;
  /// gradient(index) as a view (f32, the parameter's shape).
  virtual sdk::TensorView gradient_view(int index) = 0;
  virtual void begin_gradients() = 0;
  virtual void end_gradients() = 0;

  /// Makes `state` current on the device for a call that writes it (the host copy is then
  /// stale); returns each layer's tensors there.
  virtual const std::vector<std::vector<sdk::TensorView>>& state_on_device(InferenceState& state) = 0;

  /// The framework's layers (backbone_kernels.hpp on the CPU, device_kernels.hpp on CUDA).
  virtual void embedding(const std::int32_t* ids, const sdk::TensorView& table, float* out, std::int64_t rows,
                         std::int64_t d_model) = 0;
  virtual void rms_norm(const float* x, const float* weight, float* out, std::int64_t rows, std::int64_t d_model,
                        double eps) = 0;
  virtual void add(float* x, const float* y, std::int64_t count) = 0;
  virtual void multiply(float* x, const float* y, std::int64_t count) = 0;
  /// grad_x (M, D) += d/dx, grad_weight (D) += d/dweight.
  virtual void rms_norm_backward(const float* x, const float* weight, const float* grad_out, float* grad_x,
                                 float* grad_weight, std::int64_t rows, std::int64_t d_model, double eps) = 0;
  /// LayerNorm (backbone_kernels.hpp) and its backward; only the CPU has them in this version
  /// (a model with LayerNorm blocks is refused on other devices before it runs).
  virtual void layer_norm(const float* x, const float* weight, const float* bias, float* out, std::int64_t rows,
                          std::int64_t d_model, double eps);
  virtual void layer_norm_backward(const float* x, const float* weight, const float* grad_out, float* grad_x,
                                   float* grad_weight, float* grad_bias, std::int64_t rows, std::int64_t d_model,
                                   double eps);
  /// grad_table[ids[m]] += grad_out[m].
  virtual void embedding_backward(const std::int32_t* ids, const float* grad_out, float* grad_table, std::int64_t rows,
                                  std::int64_t d_model) = 0;
  /// The mean next-token cross-entropy of logits (B, L, V) (device) against `tokens` (whose ids
  /// and lengths are also on the device: ids (M), lengths (B) or nullptr), writing its gradient
  /// to grad (B, L, V) when grad is not nullptr (positions without a target untouched).
  virtual double next_token_loss(const float* logits, const std::int32_t* ids, const std::int32_t* lengths,
                                 const TokenBatch& tokens, std::int64_t vocab, float* grad) = 0;

  /// Decode: the step's input ids on the device for `ids` (B) and the device memory its
  /// output (`count` floats) goes to, both fixed per batch size; then runs `queue` (which queues
  /// one step that reads and writes only those, the state and scratch) for `state`: a CUDA
  /// device captures it in a graph and replays it later.
  virtual const std::int32_t* step_ids(const std::vector<std::int32_t>& ids) = 0;
  virtual float* step_output(std::int64_t batch, std::int64_t count) = 0;
  virtual void run_step(std::int64_t batch, InferenceState& state, const std::function<void()>& queue) = 0;
  /// ids[r] = the index of the largest of logits[r * stride + 0 .. count) (device), on the host.
  virtual std::vector<std::int32_t> argmax_rows(const float* logits, std::int64_t rows, std::int64_t stride,
                                                std::int64_t count) = 0;
};

/// The DeviceOps of `impl` (its components created, its parameters final) on CUDA device
/// `device`: checks that every component declares CUDA and that the device exists, and
/// uploads the parameters. Throws mambakit::Error naming the component or the device, and in
/// a build without CUDA says so.
std::unique_ptr<DeviceOps> make_cuda_ops(Model::Impl& impl, sdk::Device device);

}  // namespace mambakit::model
