// CudaOps (see cuda_ops.hpp); make_cuda_ops() checks the device and the components first.

#include "cuda_ops.hpp"

#include <fmt/format.h>

#include <numeric>

#include "device_guard.hpp"
#include "device_kernels.hpp"
#include "device_state.hpp"
#include "loss_kernels.hpp"
#include "model_impl.hpp"
#include "state_storage.hpp"
#include "training_objectives.hpp"

namespace mambakit::cuda {

CudaOps::CudaOps(Model::Impl& impl, sdk::Device device) : impl_(impl), device_(device), parameters_(impl.store, device) {
  parameters_.upload();
}

std::shared_ptr<void> CudaOps::use_device() { return std::make_shared<DeviceGuard>(device_.index); }

void CudaOps::sync_parameters() {
  DeviceGuard on(device_.index);
  parameters_.upload();
}

void CudaOps::begin() {
  DeviceGuard on(device_.index);
  arena_.reset(stream_.get());
}

sdk::Context CudaOps::context() {
  sdk::Context ctx = impl_.context();  // the kernel choice
  ctx.device = device_;
  ctx.stream = stream_.get();
  ctx.n_threads = 1;
  ctx.workspace = &arena_;
  return ctx;
}

void* CudaOps::scratch(std::size_t bytes, const char* what) {
  return arena_.take<unsigned char>(static_cast<std::int64_t>(bytes), what);
}

void CudaOps::release(void* data) { arena_.deallocate(data); }

void CudaOps::to_device(void* device_memory, const void* host_memory, std::size_t bytes) {
  DeviceGuard on(device_.index);
  MAMBAKIT_CUDA_THROW_IF_ERROR(cudaMemcpyAsync(device_memory, host_memory, bytes, cudaMemcpyHostToDevice, stream_.get()));
  stream_.synchronize();  // the host memory may be released on return
}

void CudaOps::to_host(void* host_memory, const void* device_memory, std::size_t bytes) {
  DeviceGuard on(device_.index);
  MAMBAKIT_CUDA_THROW_IF_ERROR(cudaMemcpyAsync(host_memory, device_memory, bytes, cudaMemcpyDeviceToHost, stream_.get()));
  stream_.synchronize();
}

void CudaOps::copy(void* destination, const void* source, std::size_t bytes) {
  DeviceGuard on(device_.index);
  MAMBAKIT_CUDA_THROW_IF_ERROR(cudaMemcpyAsync(destination, source, bytes, cudaMemcpyDeviceToDevice, stream_.get()));
}

void CudaOps::copy_rows(void* destination, std::size_t destination_pitch, const void* source, std::size_t source_pitch,
                        std::size_t row_bytes, std::int64_t rows) {
  DeviceGuard on(device_.index);
  MAMBAKIT_CUDA_THROW_IF_ERROR(cudaMemcpy2DAsync(destination, destination_pitch, source, source_pitch, row_bytes,
                                                 static_cast<std::size_t>(rows), cudaMemcpyDeviceToDevice,
                                                 stream_.get()));
}

void CudaOps::zero(void* memory, std::size_t bytes) {
  DeviceGuard on(device_.index);
  MAMBAKIT_CUDA_THROW_IF_ERROR(cudaMemsetAsync(memory, 0, bytes, stream_.get()));
}

float* CudaOps::output(FloatTensor& result) { return arena_.take<float>(result.numel(), "the head output"); }

void CudaOps::finish_output(FloatTensor& result, const float* device_output) {
  to_host(result.values.data(), device_output, result.values.size() * sizeof(float));
}

sdk::TensorView CudaOps::parameter(int index) { return parameters_.view(index); }

const float* CudaOps::parameter_f32(int index) { return parameters_.f32_data(index); }

float* CudaOps::gradient(int index) { return gradients_->data(index); }

sdk::TensorView CudaOps::gradient_view(int index) { return gradients_->view(index); }

void CudaOps::begin_gradients() {
  DeviceGuard on(device_.index);
  if (!gradients_) gradients_ = std::make_unique<DeviceGradients>(impl_.store, device_);
  gradients_->zero(stream_.get());
}

void CudaOps::end_gradients() {
  DeviceGuard on(device_.index);
  gradients_->add_to_host(stream_.get());
}

const std::vector<std::vector<sdk::TensorView>>& CudaOps::state_on_device(InferenceState& state) {
  DeviceGuard on(device_.index);
  auto& mirror = static_cast<DeviceState&>(model::StateAccess::mirror_on_device(
      state, [&](const std::vector<std::vector<FloatTensor>>& tensors) -> std::unique_ptr<model::StateMirror> {
        return std::make_unique<DeviceState>(tensors, device_);
      }));
  if (mirror.device() != device_) {
    throw Error(fmt::format("the inference state lives on {} but the model runs on {}", device_name(mirror.device()),
                            device_name(device_)));
  }
  state_ = &mirror;
  return mirror.views();
}

void CudaOps::embedding(const std::int32_t* ids, const sdk::TensorView& table, float* out, std::int64_t rows,
                        std::int64_t d_model) {
  MAMBAKIT_CUDA_THROW_IF_ERROR(launch_embedding(ids, table.data, table.dtype, out, rows, d_model, stream_.get()));
}

void CudaOps::rms_norm(const float* x, const float* weight, float* out, std::int64_t rows, std::int64_t d_model,
                       double eps) {
  MAMBAKIT_CUDA_THROW_IF_ERROR(launch_rms_norm(x, weight, out, rows, d_model, eps, stream_.get()));
}

void CudaOps::add(float* x, const float* y, std::int64_t count) {
  MAMBAKIT_CUDA_THROW_IF_ERROR(launch_add_in_place(x, y, count, stream_.get()));
}

void CudaOps::multiply(float* x, const float* y, std::int64_t count) {
  MAMBAKIT_CUDA_THROW_IF_ERROR(launch_multiply_in_place(x, y, count, stream_.get()));
}

void CudaOps::rms_norm_backward(const float* x, const float* weight, const float* grad_out, float* grad_x,
                                float* grad_weight, std::int64_t rows, std::int64_t d_model, double eps) {
  auto* row_scales = arena_.take<double>(rows, "the RMSNorm row scales");
  MAMBAKIT_CUDA_THROW_IF_ERROR(launch_rms_norm_backward(x, weight, grad_out, grad_x, grad_weight, row_scales, rows,
                                                        d_model, eps, stream_.get()));
  arena_.deallocate(row_scales);
}

void CudaOps::embedding_backward(const std::int32_t* ids, const float* grad_out, float* grad_table, std::int64_t rows,
                                 std::int64_t d_model) {
  MAMBAKIT_CUDA_THROW_IF_ERROR(launch_embedding_backward(ids, grad_out, grad_table, rows, d_model, stream_.get()));
}

double CudaOps::next_token_loss(const float* logits, const std::int32_t* ids, const std::int32_t* lengths,
                                const TokenBatch& tokens, std::int64_t vocab, float* grad) {
  const std::int64_t M = tokens.batch * tokens.length;
  const std::int64_t count = model::lm_target_count(tokens.batch, tokens.length, tokens.lengths);
  auto* row_losses = arena_.take<double>(M, "the per-position losses");
  MAMBAKIT_CUDA_THROW_IF_ERROR(launch_lm_cross_entropy(logits, ids, lengths, tokens.batch, tokens.length, vocab, count,
                                                       grad, row_losses, stream_.get()));
  std::vector<double> losses(static_cast<std::size_t>(M));
  to_host(losses.data(), row_losses, losses.size() * sizeof(double));
  return std::accumulate(losses.begin(), losses.end(), 0.0) / static_cast<double>(count);
}

CudaOps::StepBuffers& CudaOps::step_buffers(std::int64_t batch) {
  auto found = step_buffers_.find(batch);
  if (found != step_buffers_.end()) return found->second;
  StepBuffers buffers;
  buffers.ids = DeviceBuffer(static_cast<std::size_t>(batch) * sizeof(std::int32_t));
  return step_buffers_.emplace(batch, std::move(buffers)).first->second;
}

const std::int32_t* CudaOps::step_ids(const std::vector<std::int32_t>& ids) {
  DeviceGuard on(device_.index);
  StepBuffers& io = step_buffers(static_cast<std::int64_t>(ids.size()));
  if (io.ids_on_device != ids) {
    MAMBAKIT_CUDA_THROW_IF_ERROR(cudaMemcpyAsync(io.ids.data(), ids.data(), ids.size() * sizeof(std::int32_t),
                                                 cudaMemcpyHostToDevice, stream_.get()));
    stream_.synchronize();
    io.ids_on_device = ids;
  }
  return io.ids.as<std::int32_t>();
}

float* CudaOps::step_output(std::int64_t batch, std::int64_t count) {
  StepBuffers& io = step_buffers(batch);
  const std::size_t bytes = static_cast<std::size_t>(count) * sizeof(float);
  if (io.output.data() == nullptr) io.output = DeviceBuffer(bytes);
  if (io.output.bytes() != bytes) {  // graphs bake the address in: the size must stay fixed
    throw Error(fmt::format("a decode step of {} rows needs {} output bytes, but its buffer holds {}", batch, bytes,
                            io.output.bytes()));
  }
  return io.output.as<float>();
}

void CudaOps::run_step(std::int64_t batch, InferenceState&, const std::function<void()>& queue) {
  DeviceGuard on(device_.index);
  const cudaStream_t stream = stream_.get();
  if (impl_.options.cuda_graphs) {
    graphs_.run({batch, state_->base(), impl_.kernel_selection}, stream, arena_, queue);
  } else {
    arena_.reset(stream);
    queue();
  }
}

std::vector<std::int32_t> CudaOps::argmax_rows(const float* logits, std::int64_t rows, std::int64_t stride,
                                               std::int64_t count) {
  DeviceGuard on(device_.index);
  StepBuffers& io = step_buffers(rows);
  io.ids_on_device.clear();  // the argmax overwrites the ids; known again once they are copied out
  MAMBAKIT_CUDA_THROW_IF_ERROR(launch_argmax_rows(logits, rows, stride, count, io.ids.as<std::int32_t>(), stream_.get()));
  std::vector<std::int32_t> result(static_cast<std::size_t>(rows));
  to_host(result.data(), io.ids.data(), result.size() * sizeof(std::int32_t));
  io.ids_on_device = result;  // the next step's input, already in place
  return result;
}

}  // namespace mambakit::cuda

namespace mambakit::model {

std::unique_ptr<DeviceOps> make_cuda_ops(Model::Impl& impl, sdk::Device device) {
  impl.check_device_support(device);
  int count = 0;
  const cudaError_t error = cudaGetDeviceCount(&count);
  if (error != cudaSuccess || count == 0) {
    cudaGetLastError();
    throw Error(fmt::format("device {} was requested, but no CUDA device is available ({})", device_name(device),
                            error != cudaSuccess ? cudaGetErrorString(error) : "the driver reports none"));
  }
  if (device.index < 0 || device.index >= count) {
    throw Error(fmt::format("device {} was requested, but this machine has {} CUDA device(s) (cuda:0 to cuda:{})",
                            device_name(device), count, count - 1));
  }
  cuda::DeviceGuard on(device.index);
  return std::make_unique<cuda::CudaOps>(impl, device);
}

}  // namespace mambakit::model
