// CudaRuntime's training (see cuda_runtime.hpp): Model::accumulate_gradients and evaluate_loss
// on the device, step for step as the CPU model does them (model_training.cpp): embedding,
// per layer RMSNorm + mixer forward (saving what its backward needs) + residual add, the final
// norm, dropout (the CPU's mask, drawn on the host), the head and the loss; then backward
// through the head, the dropout mask, the final norm, each layer in reverse (mixer backward,
// RMSNorm backward, the residual passing the gradient through) and the embedding.
//
// Memory, all from the arena: each layer's input and the final hidden states (n_layer + 1
// slices of (M, D)), the mixers' saved tensors (with recompute: one layer's at a time, taken
// and released last in, first out), the head's output and its gradient. Gradients accumulate in
// a DeviceGradients block, zeroed per call and added to the host's at its end.
//
// Dimensions: B batch, L length, M = B x L rows, D d_model.

#include <fmt/format.h>

#include <numeric>
#include <variant>

#include "cuda_runtime.hpp"
#include "device_guard.hpp"
#include "device_kernels.hpp"
#include "loss_kernels.hpp"
#include "model_impl.hpp"
#include "training_objectives.hpp"

namespace mambakit::cuda {

struct CudaRuntime::TrainingPass {
  std::int64_t B = 0, L = 0, D = 0, M = 0;
  bool training = false;
  sdk::Context ctx;
  std::int32_t* ids = nullptr;      ///< (M)
  std::int32_t* lengths = nullptr;  ///< (B), or nullptr for full rows
  /// Training: (n_layer + 1, M, D), each layer's input, then the final hidden states.
  /// Evaluation: (M, D), updated in place.
  float* hidden = nullptr;
  float* normed = nullptr;        ///< (M, D) scratch
  float* mixed = nullptr;         ///< (M, D) scratch
  float* final_normed = nullptr;  ///< (M, D) the head's input (after dropout)
  float* mask = nullptr;          ///< (M, D) the dropout mask, or nullptr
  std::vector<float> host_mask;   ///< what `mask` was uploaded from (kept until the call's end)
  /// Per layer, without recompute: the saved tensors of its mixer's forward.
  std::vector<std::vector<sdk::TensorView>> saved;
  std::vector<std::int64_t> output_shape;
  float* output = nullptr;  ///< the head's output
  std::size_t activation_bytes = 0;

  /// Layer `layer`'s input (layer = n_layer: the final hidden states).
  [[nodiscard]] float* layer_input(std::size_t layer) const {
    return training ? hidden + static_cast<std::int64_t>(layer) * M * D : hidden;
  }
};

double CudaRuntime::accumulate_gradients(const TokenBatch& tokens, const TrainingTargets& targets, bool recompute) {
  DeviceGuard on(device_.index);
  if (impl_.head_capabilities.objective == sdk::HeadObjective::kNextToken) model::lm_target_count(tokens.batch, tokens.length, tokens.lengths);
  if (!gradients_) gradients_ = std::make_unique<DeviceGradients>(impl_.store, device_);
  const cudaStream_t stream = stream_.get();
  arena_.reset(stream);
  gradients_->zero(stream);
  TrainingPass pass = queue_training_forward(tokens, recompute ? PassKind::kTrainRecompute : PassKind::kTrain,
                                             targets.dropout_seed);
  float* grad_output = arena_.take<float>(numel_of(pass.output_shape), "the gradient of the head output");
  pass.activation_bytes += static_cast<std::size_t>(numel_of(pass.output_shape)) * sizeof(float) * 2;
  const double loss = compute_loss(pass, tokens, targets, grad_output);
  queue_backward(pass, grad_output, recompute);
  gradients_->add_to_host(stream);
  impl_.last_activation_bytes = pass.activation_bytes;
  return loss;
}

double CudaRuntime::evaluate_loss(const TokenBatch& tokens, const TrainingTargets& targets) {
  DeviceGuard on(device_.index);
  if (impl_.head_capabilities.objective == sdk::HeadObjective::kNextToken) model::lm_target_count(tokens.batch, tokens.length, tokens.lengths);
  arena_.reset(stream_.get());
  TrainingPass pass = queue_training_forward(tokens, PassKind::kEvaluate, 0);
  return compute_loss(pass, tokens, targets, nullptr);
}

CudaRuntime::TrainingPass CudaRuntime::queue_training_forward(const TokenBatch& tokens, PassKind kind,
                                                              std::uint64_t dropout_seed) {
  const cudaStream_t stream = stream_.get();
  const std::size_t n_layer = impl_.mixers.size();
  const double eps = impl_.config.norm_eps;
  TrainingPass pass;
  pass.B = tokens.batch;
  pass.L = tokens.length;
  pass.D = impl_.config.d_model;
  pass.M = pass.B * pass.L;
  pass.training = kind != PassKind::kEvaluate;
  const std::int64_t M = pass.M, D = pass.D;
  pass.ctx = context();
  pass.ids = arena_.take<std::int32_t>(M, "the token ids");
  MAMBAKIT_CUDA_THROW_IF_ERROR(cudaMemcpyAsync(pass.ids, tokens.ids.data(), static_cast<std::size_t>(M) * sizeof(std::int32_t),
                                      cudaMemcpyHostToDevice, stream));
  if (!tokens.lengths.empty()) {
    pass.lengths = arena_.take<std::int32_t>(pass.B, "the row lengths");
    MAMBAKIT_CUDA_THROW_IF_ERROR(cudaMemcpyAsync(pass.lengths, tokens.lengths.data(),
                                        static_cast<std::size_t>(pass.B) * sizeof(std::int32_t), cudaMemcpyHostToDevice,
                                        stream));
  }
  const std::int64_t slices = pass.training ? static_cast<std::int64_t>(n_layer) + 1 : 1;
  pass.hidden = arena_.take<float>(slices * M * D, "the layer inputs");
  pass.normed = arena_.take<float>(M * D, "the normed hidden states");
  pass.mixed = arena_.take<float>(M * D, "the mixer outputs");
  pass.final_normed = arena_.take<float>(M * D, "the head input");
  if (kind == PassKind::kTrain) pass.saved.resize(n_layer);
  const std::vector<std::int64_t> shape{pass.B, pass.L, D};
  const std::size_t slice_bytes = static_cast<std::size_t>(M * D) * sizeof(float);

  MAMBAKIT_CUDA_THROW_IF_ERROR(launch_embedding(pass.ids, embedding_.data, embedding_.dtype, pass.hidden, M, D, stream));
  for (std::size_t layer = 0; layer < n_layer; ++layer) {
    float* input = pass.layer_input(layer);
    float* next = pass.layer_input(layer + 1);
    MAMBAKIT_CUDA_THROW_IF_ERROR(launch_rms_norm(input, norms_[layer], pass.normed, M, D, eps, stream));
    if (pass.training) pass.activation_bytes += slice_bytes;
    if (kind == PassKind::kEvaluate) {
      queue_mixer_forward(pass.ctx, layer, pass.normed, pass.mixed, shape, {});
    } else {
      // With recompute the saved tensors are still written (the mixer runs its training path,
      // as on the CPU), then released at once; backward recomputes them.
      std::vector<sdk::TensorView> saved = take_saved(layer, pass.B, pass.L);
      queue_mixer_forward(pass.ctx, layer, pass.normed, pass.mixed, shape, saved);
      if (kind == PassKind::kTrain) {
        for (const auto& tensor : saved) pass.activation_bytes += static_cast<std::size_t>(tensor.numel()) * sizeof(float);
        pass.saved[layer] = std::move(saved);
      } else {
        release_saved(saved);
      }
    }
    if (next != input) {
      MAMBAKIT_CUDA_THROW_IF_ERROR(cudaMemcpyAsync(next, input, slice_bytes, cudaMemcpyDeviceToDevice, stream));
    }
    MAMBAKIT_CUDA_THROW_IF_ERROR(launch_add_in_place(next, pass.mixed, M * D, stream));
  }
  MAMBAKIT_CUDA_THROW_IF_ERROR(launch_rms_norm(pass.layer_input(n_layer), norm_f_, pass.final_normed, M, D, eps, stream));
  const double dropout = impl_.head_capabilities.input_dropout;
  if (pass.training && dropout > 0.0) {
    pass.host_mask = model::dropout_mask(static_cast<std::size_t>(M * D), dropout, dropout_seed);
    pass.mask = arena_.take<float>(M * D, "the dropout mask");
    MAMBAKIT_CUDA_THROW_IF_ERROR(cudaMemcpyAsync(pass.mask, pass.host_mask.data(), slice_bytes, cudaMemcpyHostToDevice, stream));
    MAMBAKIT_CUDA_THROW_IF_ERROR(launch_multiply_in_place(pass.final_normed, pass.mask, M * D, stream));
  }
  pass.output_shape = head_output_shape(pass.B, pass.L);
  pass.output = arena_.take<float>(numel_of(pass.output_shape), "the head output");
  head_forward(pass.ctx, pass.final_normed, pass.B, pass.L, pass.lengths, pass.output, pass.output_shape);
  return pass;
}

double CudaRuntime::compute_loss(TrainingPass& pass, const TokenBatch& tokens, const TrainingTargets& targets,
                                 float* grad_output) {
  const cudaStream_t stream = stream_.get();
  const std::int64_t output_count = numel_of(pass.output_shape);
  if (impl_.head_capabilities.objective == sdk::HeadObjective::kNextToken) {
    const std::int64_t vocab = pass.output_shape.back();
    if (output_count != pass.M * vocab) {
      throw Error(fmt::format("{} output of shape {} has no row of logits per position of a ({}, {}) batch", head_owner_,
                              model::format_shape(pass.output_shape), pass.B, pass.L));
    }
    const std::int64_t count = model::lm_target_count(pass.B, pass.L, tokens.lengths);
    auto* row_losses = arena_.take<double>(pass.M, "the per-position losses");
    MAMBAKIT_CUDA_THROW_IF_ERROR(launch_lm_cross_entropy(pass.output, pass.ids, pass.lengths, pass.B, pass.L, vocab, count,
                                                grad_output, row_losses, stream));
    std::vector<double> losses(static_cast<std::size_t>(pass.M));
    MAMBAKIT_CUDA_THROW_IF_ERROR(cudaMemcpyAsync(losses.data(), row_losses, losses.size() * sizeof(double),
                                        cudaMemcpyDeviceToHost, stream));
    stream_.synchronize();
    return std::accumulate(losses.begin(), losses.end(), 0.0) / static_cast<double>(count);
  }
  // Classification: the (B, C) scores are small; the loss and its gradient come from the host.
  FloatTensor scores(pass.output_shape);
  MAMBAKIT_CUDA_THROW_IF_ERROR(cudaMemcpyAsync(scores.values.data(), pass.output, scores.values.size() * sizeof(float),
                                      cudaMemcpyDeviceToHost, stream));
  stream_.synchronize();
  FloatTensor grad(pass.output_shape);
  const double loss = model::classification_cross_entropy(scores, targets.labels, grad);
  if (grad_output != nullptr) {
    MAMBAKIT_CUDA_THROW_IF_ERROR(cudaMemcpyAsync(grad_output, grad.values.data(), grad.values.size() * sizeof(float),
                                        cudaMemcpyHostToDevice, stream));
    stream_.synchronize();  // `grad` is released on return
  }
  return loss;
}

void CudaRuntime::queue_backward(TrainingPass& pass, const float* grad_output, bool recompute) {
  const cudaStream_t stream = stream_.get();
  const std::int64_t M = pass.M, D = pass.D;
  const double eps = impl_.config.norm_eps;
  const std::size_t n_layer = impl_.mixers.size();
  const std::size_t slice_bytes = static_cast<std::size_t>(M * D) * sizeof(float);
  const std::vector<std::int64_t> shape{pass.B, pass.L, D};

  float* grad_final = arena_.take<float>(M * D, "the gradient of the head input");
  MAMBAKIT_CUDA_THROW_IF_ERROR(cudaMemsetAsync(grad_final, 0, slice_bytes, stream));
  std::vector<sdk::TensorView> head_grads;
  for (int index : impl_.head_params) head_grads.push_back(gradients_->view(index));
  sdk::HeadBackwardArgs head_args;
  head_args.params = head_params_.data();
  head_args.hidden = device_view(pass.final_normed, sdk::DType::kF32, device_, shape);
  if (pass.lengths != nullptr) head_args.lengths = device_view(pass.lengths, sdk::DType::kI32, device_, {pass.B});
  head_args.grad_output = device_view(grad_output, sdk::DType::kF32, device_, pass.output_shape);
  head_args.grad_hidden = device_view(grad_final, sdk::DType::kF32, device_, shape);
  head_args.grad_params = head_grads.data();
  model::check(impl_.head->backward(pass.ctx, head_args), head_owner_ + " backward");
  if (pass.mask != nullptr) MAMBAKIT_CUDA_THROW_IF_ERROR(launch_multiply_in_place(grad_final, pass.mask, M * D, stream));

  float* grad_hidden = arena_.take<float>(M * D, "the gradient of the hidden states");
  float* grad_normed = arena_.take<float>(M * D, "the gradient of the normed hidden states");
  auto* row_scales = arena_.take<double>(M, "the RMSNorm row scales");
  MAMBAKIT_CUDA_THROW_IF_ERROR(cudaMemsetAsync(grad_hidden, 0, slice_bytes, stream));
  MAMBAKIT_CUDA_THROW_IF_ERROR(launch_rms_norm_backward(pass.layer_input(n_layer), norm_f_, grad_final, grad_hidden,
                                               gradients_->data(impl_.norm_f), row_scales, M, D, eps, stream));
  for (std::size_t layer = n_layer; layer-- > 0;) {
    const float* input = pass.layer_input(layer);
    MAMBAKIT_CUDA_THROW_IF_ERROR(launch_rms_norm(input, norms_[layer], pass.normed, M, D, eps, stream));
    std::vector<sdk::TensorView> recomputed;
    if (recompute) {
      recomputed = take_saved(layer, pass.B, pass.L);
      queue_mixer_forward(pass.ctx, layer, pass.normed, pass.mixed, shape, recomputed);
    }
    const std::vector<sdk::TensorView>& saved = recompute ? recomputed : pass.saved[layer];
    std::vector<sdk::TensorView> grads;
    for (int index : impl_.mixer_params[layer]) grads.push_back(gradients_->view(index));
    MAMBAKIT_CUDA_THROW_IF_ERROR(cudaMemsetAsync(grad_normed, 0, slice_bytes, stream));
    sdk::MixerBackwardArgs args;
    args.params = mixer_params_[layer].data();
    args.x = device_view(pass.normed, sdk::DType::kF32, device_, shape);
    args.saved = saved.data();
    args.grad_y = device_view(grad_hidden, sdk::DType::kF32, device_, shape);
    args.grad_x = device_view(grad_normed, sdk::DType::kF32, device_, shape);
    args.grad_params = grads.data();
    model::check(impl_.mixers[layer]->backward(pass.ctx, args), mixer_owners_[layer] + " backward");
    // The residual passes grad_hidden through unchanged; the norm adds its input gradient.
    MAMBAKIT_CUDA_THROW_IF_ERROR(launch_rms_norm_backward(input, norms_[layer], grad_normed, grad_hidden,
                                                 gradients_->data(impl_.layer_norms[layer]), row_scales, M, D, eps,
                                                 stream));
    if (recompute) release_saved(recomputed);
  }
  MAMBAKIT_CUDA_THROW_IF_ERROR(launch_embedding_backward(pass.ids, grad_hidden, gradients_->data(impl_.embedding), M, D, stream));
}

std::vector<sdk::TensorView> CudaRuntime::take_saved(std::size_t layer, std::int64_t batch, std::int64_t length) {
  const sdk::Mixer& mixer = *impl_.mixers[layer];
  std::vector<sdk::TensorView> saved;
  for (std::int32_t i = 0; i < mixer.saved_count(); ++i) {
    sdk::TensorSpec spec;
    model::check(mixer.saved_spec(i, batch, length, &spec), mixer_owners_[layer]);
    const std::vector<std::int64_t> shape(spec.shape, spec.shape + spec.rank);
    float* data = arena_.take<float>(numel_of(shape), "a mixer's saved activations");
    saved.push_back(device_view(data, sdk::DType::kF32, device_, shape));
  }
  return saved;
}

void CudaRuntime::release_saved(const std::vector<sdk::TensorView>& saved) {
  for (auto tensor = saved.rbegin(); tensor != saved.rend(); ++tensor) arena_.deallocate(tensor->data);
}

}  // namespace mambakit::cuda
