// A model on a CUDA device (DeviceRuntime::create_cuda): the embedding, norms and residual adds
// run as the framework's device kernels (device_kernels.cu), the mixers and the head through
// their plugins' device paths, all queued on one stream the model owns, with one DeviceArena
// as the workspace of every call and the home of the activations.
//
// Memory: parameters in a DeviceParameters copy of the host store (uploaded at creation and
// after load_weights); per call, activations and plugin scratch from the arena (reset at the
// start of each call); the inference state in a DeviceState mirror that the InferenceState
// owns; per decode batch size, fixed buffers for the step's input ids and output logits.
// Each call waits for its results (the copy of the output to the host) before returning.
// Decode: with ModelOptions::cuda_graphs the step (embedding of the ids already on the device
// -> layers -> norm_f -> head) is captured once per (batch, state, scan backend) and replayed.

#include <fmt/format.h>

#include <map>
#include <memory>

#include "cuda_stream.hpp"
#include "device_arena.hpp"
#include "device_guard.hpp"
#include "device_kernels.hpp"
#include "device_parameters.hpp"
#include "device_state.hpp"
#include "device_runtime.hpp"
#include "model_impl.hpp"
#include "step_graphs.hpp"

namespace mambakit::cuda {

namespace {

sdk::TensorView device_view(const void* data, sdk::DType dtype, sdk::Device device,
                            const std::vector<std::int64_t>& shape) {
  return sdk::make_view(const_cast<void*>(data), dtype, device, shape.data(), static_cast<std::int32_t>(shape.size()));
}

std::int64_t numel_of(const std::vector<std::int64_t>& shape) {
  std::int64_t count = 1;
  for (auto extent : shape) count *= extent;
  return count;
}

class CudaRuntime final : public model::DeviceRuntime {
 public:
  CudaRuntime(Impl& impl, sdk::Device device) : impl_(impl), device_(device), parameters_(impl.store, device) {
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
    head_owner_ = fmt::format("head/{}", head_name(impl.config));
  }

  void upload_parameters() override {
    DeviceGuard on(device_.index);
    parameters_.upload();
  }

  FloatTensor forward(const TokenBatch& tokens, InferenceState* state, bool last_position_only) override {
    DeviceGuard on(device_.index);
    const std::int64_t B = tokens.batch, L = tokens.length, D = impl_.ssm().d_model, M = B * L;
    DeviceState* device_state = state != nullptr ? &state_on_device(*state) : nullptr;
    const cudaStream_t stream = stream_.get();
    arena_.reset(stream);
    const sdk::Context ctx = context(B, L);
    auto* ids = arena_.take<std::int32_t>(M, "the token ids");
    MAMBAKIT_CUDA_CHECK(cudaMemcpyAsync(ids, tokens.ids.data(), static_cast<std::size_t>(M) * sizeof(std::int32_t),
                                        cudaMemcpyHostToDevice, stream));
    float* hidden = arena_.take<float>(M * D, "the hidden states");
    float* normed = arena_.take<float>(M * D, "the normed hidden states");
    float* mixed = arena_.take<float>(M * D, "the mixer outputs");
    MAMBAKIT_CUDA_CHECK(launch_embedding(ids, embedding_.data, embedding_.dtype, hidden, M, D, stream));
    const std::vector<std::int64_t> shape{B, L, D};
    for (std::size_t layer = 0; layer < impl_.mixers.size(); ++layer) {
      MAMBAKIT_CUDA_CHECK(launch_rms_norm(hidden, norms_[layer], normed, M, D, impl_.ssm().norm_eps, stream));
      sdk::MixerForwardArgs args;
      args.params = mixer_params_[layer].data();
      args.x = device_view(normed, sdk::DType::kF32, device_, shape);
      args.y = device_view(mixed, sdk::DType::kF32, device_, shape);
      std::vector<sdk::TensorView> initial;
      if (device_state != nullptr) {
        const auto& finals = device_state->views(layer);
        if (state->seqlen_offset() > 0) {  // a copy: initial and final never alias
          for (const auto& tensor : finals) {
            float* copy = arena_.take<float>(tensor.numel(), "a copy of the initial state");
            MAMBAKIT_CUDA_CHECK(cudaMemcpyAsync(copy, tensor.data, static_cast<std::size_t>(tensor.numel()) * sizeof(float),
                                                cudaMemcpyDeviceToDevice, stream));
            sdk::TensorView view = tensor;
            view.data = copy;
            initial.push_back(view);
          }
          args.initial_state = initial.data();
        }
        args.final_state = finals.data();
      }
      model::check(impl_.mixers[layer]->forward(ctx, args), mixer_owners_[layer]);
      MAMBAKIT_CUDA_CHECK(launch_add_in_place(hidden, mixed, M * D, stream));
    }
    const float* head_input = hidden;
    std::int64_t head_length = L;
    if (last_position_only && L > 1) {
      float* last = arena_.take<float>(B * D, "the last hidden states");
      const std::size_t row_bytes = static_cast<std::size_t>(D) * sizeof(float);
      MAMBAKIT_CUDA_CHECK(cudaMemcpy2DAsync(last, row_bytes, hidden + (L - 1) * D, static_cast<std::size_t>(L) * row_bytes,
                                            row_bytes, static_cast<std::size_t>(B), cudaMemcpyDeviceToDevice, stream));
      head_input = last;
      head_length = 1;
    }
    std::int32_t* lengths = nullptr;
    if (!last_position_only && !tokens.lengths.empty()) {
      lengths = arena_.take<std::int32_t>(B, "the row lengths");
      MAMBAKIT_CUDA_CHECK(cudaMemcpyAsync(lengths, tokens.lengths.data(), static_cast<std::size_t>(B) * sizeof(std::int32_t),
                                          cudaMemcpyHostToDevice, stream));
    }
    const std::vector<std::int64_t> output_shape = head_output_shape(B, head_length);
    float* output = arena_.take<float>(numel_of(output_shape), "the head output");
    run_head(ctx, head_input, B, head_length, lengths, normed, output, output_shape);
    FloatTensor result(output_shape);
    MAMBAKIT_CUDA_CHECK(cudaMemcpyAsync(result.values.data(), output, result.values.size() * sizeof(float),
                                        cudaMemcpyDeviceToHost, stream));
    stream_.synchronize();
    if (state != nullptr) advance(*state, L);
    return result;
  }

  FloatTensor step(const std::vector<std::int32_t>& ids, InferenceState& state) override {
    DeviceGuard on(device_.index);
    StepBuffers& io = queue_step(ids, state);
    FloatTensor result(io.logits_shape);
    MAMBAKIT_CUDA_CHECK(cudaMemcpyAsync(result.values.data(), io.logits.data(), result.values.size() * sizeof(float),
                                        cudaMemcpyDeviceToHost, stream_.get()));
    stream_.synchronize();
    advance(state, 1);
    return result;
  }

  std::vector<std::int32_t> step_argmax(const std::vector<std::int32_t>& ids, InferenceState& state) override {
    DeviceGuard on(device_.index);
    const std::int64_t B = state.batch(), vocab = impl_.ssm().vocab_size;
    StepBuffers& io = queue_step(ids, state);
    const std::int64_t stride = io.logits_shape.back();
    if (numel_of(io.logits_shape) != B * stride || stride < vocab) {
      throw Error(fmt::format("{} output of shape {} has no row of {} logits per sequence", head_owner_,
                              model::format_shape(io.logits_shape), vocab));
    }
    const cudaStream_t stream = stream_.get();
    MAMBAKIT_CUDA_CHECK(launch_argmax_rows(io.logits.as<float>(), B, stride, vocab, io.ids.as<std::int32_t>(), stream));
    std::vector<std::int32_t> result(static_cast<std::size_t>(B));
    MAMBAKIT_CUDA_CHECK(cudaMemcpyAsync(result.data(), io.ids.data(), result.size() * sizeof(std::int32_t),
                                        cudaMemcpyDeviceToHost, stream));
    stream_.synchronize();
    io.ids_on_device = result;
    advance(state, 1);
    return result;
  }

 private:
  /// A decode batch size's fixed input and output: ids (B) i32 and logits (the head's output
  /// for (B, 1)), at addresses the step's graphs bake in.
  struct StepBuffers {
    DeviceBuffer ids;
    DeviceBuffer logits;
    std::vector<std::int64_t> logits_shape;
    std::vector<std::int32_t> ids_on_device;  ///< what `ids` holds (empty: unknown)
  };

  sdk::Context context(std::int64_t batch, std::int64_t length) {
    sdk::Context ctx;
    ctx.device = device_;
    ctx.stream = stream_.get();
    ctx.n_threads = 1;
    ctx.workspace = &arena_;
    ctx.scan = impl_.scans.select(impl_.problem(batch, length)).backend;
    return ctx;
  }

  DeviceState& state_on_device(InferenceState& state) {
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

  std::vector<std::int64_t> head_output_shape(std::int64_t batch, std::int64_t length) const {
    sdk::TensorSpec spec;
    model::check(impl_.head->output_spec(batch, length, &spec), head_owner_);
    return std::vector<std::int64_t>(spec.shape, spec.shape + spec.rank);
  }

  /// norm_f of hidden (B, L, D) into `normed` (B*L*D scratch), then the head into `output`
  /// (shaped `output_shape`); lengths (B) i32 on the device or nullptr.
  void run_head(const sdk::Context& ctx, const float* hidden, std::int64_t batch, std::int64_t length,
                const std::int32_t* lengths, float* normed, float* output, const std::vector<std::int64_t>& output_shape) {
    const std::int64_t D = impl_.ssm().d_model;
    const cudaStream_t stream = stream_.get();
    MAMBAKIT_CUDA_CHECK(launch_rms_norm(hidden, norm_f_, normed, batch * length, D, impl_.ssm().norm_eps, stream));
    sdk::HeadForwardArgs args;
    args.params = head_params_.data();
    args.hidden = device_view(normed, sdk::DType::kF32, device_, {batch, length, D});
    if (lengths != nullptr) args.lengths = device_view(lengths, sdk::DType::kI32, device_, {batch});
    args.output = device_view(output, sdk::DType::kF32, device_, output_shape);
    model::check(impl_.head->forward(ctx, args), head_owner_);
  }

  StepBuffers& step_buffers(std::int64_t batch) {
    auto found = step_buffers_.find(batch);
    if (found != step_buffers_.end()) return found->second;
    StepBuffers buffers;
    buffers.logits_shape = head_output_shape(batch, 1);
    buffers.ids = DeviceBuffer(static_cast<std::size_t>(batch) * sizeof(std::int32_t));
    buffers.logits = DeviceBuffer(static_cast<std::size_t>(numel_of(buffers.logits_shape)) * sizeof(float));
    return step_buffers_.emplace(batch, std::move(buffers)).first->second;
  }

  /// Queues one decode step for `ids` (B, checked): the ids go up unless the device already
  /// holds them, then the step runs (through its graph when enabled). Returns the batch's
  /// buffers, whose logits the queued work writes.
  StepBuffers& queue_step(const std::vector<std::int32_t>& ids, InferenceState& state) {
    const std::int64_t B = state.batch();
    DeviceState& device_state = state_on_device(state);
    StepBuffers& io = step_buffers(B);
    const cudaStream_t stream = stream_.get();
    if (io.ids_on_device != ids) {
      MAMBAKIT_CUDA_CHECK(cudaMemcpyAsync(io.ids.data(), ids.data(), ids.size() * sizeof(std::int32_t),
                                          cudaMemcpyHostToDevice, stream));
      io.ids_on_device = ids;
    }
    const sdk::Context ctx = context(B, 1);
    const auto body = [&] { queue_step_body(ctx, B, io, device_state); };
    if (impl_.options.cuda_graphs) {
      graphs_.run({B, device_state.base(), ctx.scan}, stream, arena_, body);
    } else {
      arena_.reset(stream);
      body();
    }
    return io;
  }

  /// The step itself, ids (B) in io.ids to logits in io.logits: no copies, no synchronisation,
  /// memory from the arena only (capturable).
  void queue_step_body(const sdk::Context& ctx, std::int64_t B, StepBuffers& io, DeviceState& device_state) {
    const std::int64_t D = impl_.ssm().d_model;
    const cudaStream_t stream = stream_.get();
    float* hidden = arena_.take<float>(B * D, "the hidden states");
    float* normed = arena_.take<float>(B * D, "the normed hidden states");
    float* mixed = arena_.take<float>(B * D, "the mixer outputs");
    MAMBAKIT_CUDA_CHECK(launch_embedding(io.ids.as<std::int32_t>(), embedding_.data, embedding_.dtype, hidden, B, D, stream));
    const std::vector<std::int64_t> shape{B, D};
    for (std::size_t layer = 0; layer < impl_.mixers.size(); ++layer) {
      MAMBAKIT_CUDA_CHECK(launch_rms_norm(hidden, norms_[layer], normed, B, D, impl_.ssm().norm_eps, stream));
      sdk::MixerStepArgs args;
      args.params = mixer_params_[layer].data();
      args.x = device_view(normed, sdk::DType::kF32, device_, shape);
      args.y = device_view(mixed, sdk::DType::kF32, device_, shape);
      args.state = device_state.views(layer).data();
      model::check(impl_.mixers[layer]->step(ctx, args), mixer_owners_[layer] + " step");
      MAMBAKIT_CUDA_CHECK(launch_add_in_place(hidden, mixed, B * D, stream));
    }
    run_head(ctx, hidden, B, 1, nullptr, normed, io.logits.as<float>(), io.logits_shape);
  }

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
  StepGraphs graphs_;  // last: its graphs are destroyed before the memory they refer to
};

}  // namespace

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
