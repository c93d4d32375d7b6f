// CudaRuntime's construction and inference (see cuda_runtime.hpp); create_cuda() checks the
// device and the components before making one.

#include "cuda_runtime.hpp"

#include <fmt/format.h>

#include "device_guard.hpp"
#include "device_kernels.hpp"
#include "device_state.hpp"
#include "model_impl.hpp"

namespace mambakit::cuda {

CudaRuntime::CudaRuntime(Impl& impl, sdk::Device device)
    : impl_(impl), device_(device), parameters_(impl.store, device) {
  parameters_.upload();
  embedding_ = parameters_.view(impl.embedding);
  for (std::size_t layer = 0; layer < impl.mixers.size(); ++layer) {
    norms_.push_back(parameters_.f32_data(impl.layer_norms[layer]));
    std::vector<sdk::TensorView> views;
    for (int index : impl.mixer_params[layer]) views.push_back(parameters_.view(index));
    mixer_params_.push_back(std::move(views));
    mixer_owners_.push_back(fmt::format("layer {} mixer/{}", layer, impl.mixer_names[layer]));
  }
  norm_f_ = parameters_.f32_data(impl.norm_f);
  for (int index : impl.head_params) head_params_.push_back(parameters_.view(index));
  head_owner_ = fmt::format("head/{}", impl.config.head.name);
}

void CudaRuntime::upload_parameters() {
  DeviceGuard on(device_.index);
  parameters_.upload();
}

FloatTensor CudaRuntime::forward(const TokenBatch& tokens, InferenceState* state, bool last_position_only) {
  DeviceGuard on(device_.index);
  const std::int64_t B = tokens.batch, L = tokens.length, D = impl_.config.d_model, M = B * L;
  DeviceState* device_state = state != nullptr ? &state_on_device(*state) : nullptr;
  const cudaStream_t stream = stream_.get();
  arena_.reset(stream);
  const sdk::Context ctx = context();
  auto* ids = arena_.take<std::int32_t>(M, "the token ids");
  MAMBAKIT_CUDA_THROW_IF_ERROR(cudaMemcpyAsync(ids, tokens.ids.data(), static_cast<std::size_t>(M) * sizeof(std::int32_t),
                                      cudaMemcpyHostToDevice, stream));
  const auto [hidden, normed, mixed] = embed(ids, M);
  const std::vector<std::int64_t> shape{B, L, D};
  for (std::size_t layer = 0; layer < impl_.mixers.size(); ++layer) {
    MAMBAKIT_CUDA_THROW_IF_ERROR(launch_rms_norm(hidden, norms_[layer], normed, M, D, impl_.config.norm_eps, stream));
    std::vector<sdk::TensorView> initial;
    const sdk::TensorView* final_state = nullptr;
    if (device_state != nullptr) {
      const auto& finals = device_state->views(layer);
      if (state->seqlen_offset() > 0) {  // a copy: initial and final never alias
        for (const auto& tensor : finals) {
          float* copy = arena_.take<float>(tensor.numel(), "a copy of the initial state");
          MAMBAKIT_CUDA_THROW_IF_ERROR(cudaMemcpyAsync(copy, tensor.data, static_cast<std::size_t>(tensor.numel()) * sizeof(float),
                                              cudaMemcpyDeviceToDevice, stream));
          sdk::TensorView view = tensor;
          view.data = copy;
          initial.push_back(view);
        }
      }
      final_state = finals.data();
    }
    queue_mixer_forward(ctx, layer, normed, mixed, shape, {}, initial.empty() ? nullptr : initial.data(), final_state);
    MAMBAKIT_CUDA_THROW_IF_ERROR(launch_add_in_place(hidden, mixed, M * D, stream));
  }
  const float* head_input = hidden;
  std::int64_t head_length = L;
  if (last_position_only && L > 1) {
    float* last = arena_.take<float>(B * D, "the last hidden states");
    const std::size_t row_bytes = static_cast<std::size_t>(D) * sizeof(float);
    MAMBAKIT_CUDA_THROW_IF_ERROR(cudaMemcpy2DAsync(last, row_bytes, hidden + (L - 1) * D, static_cast<std::size_t>(L) * row_bytes,
                                          row_bytes, static_cast<std::size_t>(B), cudaMemcpyDeviceToDevice, stream));
    head_input = last;
    head_length = 1;
  }
  std::int32_t* lengths = nullptr;
  if (!last_position_only && !tokens.lengths.empty()) {
    lengths = arena_.take<std::int32_t>(B, "the row lengths");
    MAMBAKIT_CUDA_THROW_IF_ERROR(cudaMemcpyAsync(lengths, tokens.lengths.data(), static_cast<std::size_t>(B) * sizeof(std::int32_t),
                                        cudaMemcpyHostToDevice, stream));
  }
  const std::vector<std::int64_t> output_shape = head_output_shape(B, head_length);
  float* output = arena_.take<float>(numel_of(output_shape), "the head output");
  run_head(ctx, head_input, B, head_length, lengths, normed, output, output_shape);
  FloatTensor result(output_shape);
  MAMBAKIT_CUDA_THROW_IF_ERROR(cudaMemcpyAsync(result.values.data(), output, result.values.size() * sizeof(float),
                                      cudaMemcpyDeviceToHost, stream));
  stream_.synchronize();
  if (state != nullptr) advance(*state, L);
  return result;
}

FloatTensor CudaRuntime::step(const std::vector<std::int32_t>& ids, InferenceState& state) {
  DeviceGuard on(device_.index);
  StepBuffers& io = queue_step(ids, state);
  FloatTensor result(io.logits_shape);
  MAMBAKIT_CUDA_THROW_IF_ERROR(cudaMemcpyAsync(result.values.data(), io.logits.data(), result.values.size() * sizeof(float),
                                      cudaMemcpyDeviceToHost, stream_.get()));
  stream_.synchronize();
  advance(state, 1);
  return result;
}

std::vector<std::int32_t> CudaRuntime::step_argmax(const std::vector<std::int32_t>& ids, InferenceState& state) {
  DeviceGuard on(device_.index);
  const std::int64_t B = state.batch(), vocab = impl_.config.vocab_size;
  StepBuffers& io = queue_step(ids, state);
  const std::int64_t stride = io.logits_shape.back();
  if (numel_of(io.logits_shape) != B * stride || stride < vocab) {
    throw Error(fmt::format("{} output of shape {} has no row of {} logits per sequence", head_owner_,
                            model::format_shape(io.logits_shape), vocab));
  }
  const cudaStream_t stream = stream_.get();
  MAMBAKIT_CUDA_THROW_IF_ERROR(launch_argmax_rows(io.logits.as<float>(), B, stride, vocab, io.ids.as<std::int32_t>(), stream));
  std::vector<std::int32_t> result(static_cast<std::size_t>(B));
  MAMBAKIT_CUDA_THROW_IF_ERROR(cudaMemcpyAsync(result.data(), io.ids.data(), result.size() * sizeof(std::int32_t),
                                      cudaMemcpyDeviceToHost, stream));
  stream_.synchronize();
  io.ids_on_device = result;
  advance(state, 1);
  return result;
}

sdk::Context CudaRuntime::context() {
  sdk::Context ctx = impl_.context();  // the kernel choice
  ctx.device = device_;
  ctx.stream = stream_.get();
  ctx.n_threads = 1;
  ctx.workspace = &arena_;
  return ctx;
}

DeviceState& CudaRuntime::state_on_device(InferenceState& state) {
  Mirror& mirror = mirror_on_device(state, [&](const StateTensors& tensors) {
    return std::make_unique<DeviceState>(tensors, device_);
  });
  auto& on_device = static_cast<DeviceState&>(mirror);
  if (on_device.device() != device_) {
    throw Error(fmt::format("the inference state lives on {} but the model runs on {}", device_name(on_device.device()),
                            device_name(device_)));
  }
  return on_device;
}

std::vector<std::int64_t> CudaRuntime::head_output_shape(std::int64_t batch, std::int64_t length) const {
  sdk::TensorSpec spec;
  model::check(impl_.head->output_spec(batch, length, &spec), head_owner_);
  return std::vector<std::int64_t>(spec.shape, spec.shape + spec.rank);
}

void CudaRuntime::head_forward(const sdk::Context& ctx, const float* normed, std::int64_t batch, std::int64_t length,
                               const std::int32_t* lengths, float* output,
                               const std::vector<std::int64_t>& output_shape) {
  sdk::HeadForwardArgs args;
  args.params = head_params_.data();
  args.hidden = device_view(normed, sdk::DType::kF32, device_, {batch, length, impl_.config.d_model});
  if (lengths != nullptr) args.lengths = device_view(lengths, sdk::DType::kI32, device_, {batch});
  args.output = device_view(output, sdk::DType::kF32, device_, output_shape);
  model::check(impl_.head->forward(ctx, args), head_owner_);
}

void CudaRuntime::run_head(const sdk::Context& ctx, const float* hidden, std::int64_t batch, std::int64_t length,
                           const std::int32_t* lengths, float* normed, float* output,
                           const std::vector<std::int64_t>& output_shape) {
  MAMBAKIT_CUDA_THROW_IF_ERROR(launch_rms_norm(hidden, norm_f_, normed, batch * length, impl_.config.d_model,
                                      impl_.config.norm_eps, stream_.get()));
  head_forward(ctx, normed, batch, length, lengths, output, output_shape);
}

CudaRuntime::StepBuffers& CudaRuntime::step_buffers(std::int64_t batch) {
  auto found = step_buffers_.find(batch);
  if (found != step_buffers_.end()) return found->second;
  StepBuffers buffers;
  buffers.logits_shape = head_output_shape(batch, 1);
  buffers.ids = DeviceBuffer(static_cast<std::size_t>(batch) * sizeof(std::int32_t));
  buffers.logits = DeviceBuffer(static_cast<std::size_t>(numel_of(buffers.logits_shape)) * sizeof(float));
  return step_buffers_.emplace(batch, std::move(buffers)).first->second;
}

CudaRuntime::StepBuffers& CudaRuntime::queue_step(const std::vector<std::int32_t>& ids, InferenceState& state) {
  const std::int64_t B = state.batch();
  DeviceState& device_state = state_on_device(state);
  StepBuffers& io = step_buffers(B);
  const cudaStream_t stream = stream_.get();
  if (io.ids_on_device != ids) {
    MAMBAKIT_CUDA_THROW_IF_ERROR(cudaMemcpyAsync(io.ids.data(), ids.data(), ids.size() * sizeof(std::int32_t),
                                        cudaMemcpyHostToDevice, stream));
    io.ids_on_device = ids;
  }
  const sdk::Context ctx = context();
  const auto body = [&] { queue_step_body(ctx, B, io, device_state); };
  if (impl_.options.cuda_graphs) {
    graphs_.run({B, device_state.base(), impl_.kernel_selection}, stream, arena_, body);
  } else {
    arena_.reset(stream);
    body();
  }
  return io;
}

void CudaRuntime::queue_mixer_forward(const sdk::Context& ctx, std::size_t layer, const float* normed, float* mixed,
                                      const std::vector<std::int64_t>& shape,
                                      const std::vector<sdk::TensorView>& saved,
                                      const sdk::TensorView* initial_state, const sdk::TensorView* final_state) {
  sdk::MixerForwardArgs args;
  args.params = mixer_params_[layer].data();
  args.x = device_view(normed, sdk::DType::kF32, device_, shape);
  args.y = device_view(mixed, sdk::DType::kF32, device_, shape);
  args.saved = saved.empty() ? nullptr : saved.data();
  args.initial_state = initial_state;
  args.final_state = final_state;
  model::check(impl_.mixers[layer]->forward(ctx, args), mixer_owners_[layer]);
}

CudaRuntime::Activations CudaRuntime::embed(const std::int32_t* ids, std::int64_t rows) {
  const std::int64_t D = impl_.config.d_model;
  Activations rows_of{arena_.take<float>(rows * D, "the hidden states"),
                      arena_.take<float>(rows * D, "the normed hidden states"),
                      arena_.take<float>(rows * D, "the mixer outputs")};
  MAMBAKIT_CUDA_THROW_IF_ERROR(launch_embedding(ids, embedding_.data, embedding_.dtype, rows_of.hidden, rows, D, stream_.get()));
  return rows_of;
}

void CudaRuntime::queue_step_body(const sdk::Context& ctx, std::int64_t B, StepBuffers& io, DeviceState& device_state) {
  const std::int64_t D = impl_.config.d_model;
  const cudaStream_t stream = stream_.get();
  const auto [hidden, normed, mixed] = embed(io.ids.as<std::int32_t>(), B);
  const std::vector<std::int64_t> shape{B, D};
  for (std::size_t layer = 0; layer < impl_.mixers.size(); ++layer) {
    MAMBAKIT_CUDA_THROW_IF_ERROR(launch_rms_norm(hidden, norms_[layer], normed, B, D, impl_.config.norm_eps, stream));
    sdk::MixerStepArgs args;
    args.params = mixer_params_[layer].data();
    args.x = device_view(normed, sdk::DType::kF32, device_, shape);
    args.y = device_view(mixed, sdk::DType::kF32, device_, shape);
    args.state = device_state.views(layer).data();
    model::check(impl_.mixers[layer]->step(ctx, args), mixer_owners_[layer] + " step");
    MAMBAKIT_CUDA_THROW_IF_ERROR(launch_add_in_place(hidden, mixed, B * D, stream));
  }
  run_head(ctx, hidden, B, 1, nullptr, normed, io.logits.as<float>(), io.logits_shape);
}

}  // namespace mambakit::cuda

namespace mambakit::model {

std::unique_ptr<DeviceRuntime> DeviceRuntime::create_cuda(Impl& impl, sdk::Device device) {
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
  return std::make_unique<cuda::CudaRuntime>(impl, device);
}

}  // namespace mambakit::model
