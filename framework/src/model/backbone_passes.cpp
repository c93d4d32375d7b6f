// The backbone's passes over DeviceOps (see backbone_passes.hpp), for the CPU and CUDA alike.
//
// Dimensions: B batch, L length, M = B x L rows, D d_model.

#include "backbone_passes.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "declaration_checks.hpp"
#include "device_ops.hpp"
#include "model_impl.hpp"
#include "state_storage.hpp"
#include "training_objectives.hpp"

namespace mambakit::model {

namespace {

/// Throws naming layer `layer`'s mixer (formatted only on failure).
void check_mixer(const sdk::Status& status, const Model::Impl& impl, std::size_t layer, const char* what) {
  if (!status.ok()) {
    throw Error(fmt::format("layer {} mixer/{}{}: {}", layer, impl.mixer_names[layer], what, status.message));
  }
}

void check_head(const sdk::Status& status, const Model::Impl& impl, const char* what) {
  if (!status.ok()) throw Error(fmt::format("head/{}{}: {}", impl.config.head.name, what, status.message));
}

std::vector<sdk::TensorView> parameters(DeviceOps& ops, const std::vector<int>& indices) {
  std::vector<sdk::TensorView> views;
  views.reserve(indices.size());
  for (int index : indices) views.push_back(ops.parameter(index));
  return views;
}

/// Views of the gradients of parameters `indices`.
std::vector<sdk::TensorView> gradients(DeviceOps& ops, const std::vector<int>& indices) {
  std::vector<sdk::TensorView> views;
  views.reserve(indices.size());
  for (int index : indices) views.push_back(ops.gradient_view(index));
  return views;
}

sdk::TensorView activation(DeviceOps& ops, const void* data, std::vector<std::int64_t> shape,
                           sdk::DType dtype = sdk::DType::kF32) {
  return sdk::make_view(const_cast<void*>(data), dtype, ops.device(), shape.data(),
                        static_cast<std::int32_t>(shape.size()));
}

std::vector<std::int64_t> head_output_shape(const Model::Impl& impl, std::int64_t batch, std::int64_t length) {
  sdk::TensorSpec spec;
  check_head(impl.head->output_spec(batch, length, &spec), impl, "");
  checked_numel(spec, 0, "head/" + impl.config.head.name, "its output");
  return std::vector<std::int64_t>(spec.shape, spec.shape + spec.rank);
}

/// The final norm of hidden (B, L', D) into `normed`, then the head into `output`.
void run_head(Model::Impl& impl, DeviceOps& ops, const sdk::Context& ctx, const float* hidden, float* normed,
              std::int64_t batch, std::int64_t length, const std::int32_t* lengths, float* output,
              const std::vector<std::int64_t>& output_shape) {
  const std::int64_t D = impl.config.d_model;
  ops.rms_norm(hidden, ops.parameter_f32(impl.norm_f), normed, batch * length, D, impl.config.norm_eps);
  const auto params = parameters(ops, impl.head_params);
  sdk::HeadForwardArgs args;
  args.params = params.data();
  args.hidden = activation(ops, normed, {batch, length, D});
  if (lengths != nullptr) args.lengths = activation(ops, lengths, {batch}, sdk::DType::kI32);
  args.output = activation(ops, output, output_shape);
  check_head(impl.head->forward(ctx, args), impl, "");
}

/// Copies `tokens`' ids, and its lengths when it has them, to the device.
std::pair<std::int32_t*, std::int32_t*> upload_tokens(DeviceOps& ops, const TokenBatch& tokens) {
  auto* ids = ops.take<std::int32_t>(tokens.batch * tokens.length, "the token ids");
  ops.to_device(ids, tokens.ids.data(), tokens.ids.size() * sizeof(std::int32_t));
  std::int32_t* lengths = nullptr;
  if (!tokens.lengths.empty()) {
    lengths = ops.take<std::int32_t>(tokens.batch, "the row lengths");
    ops.to_device(lengths, tokens.lengths.data(), tokens.lengths.size() * sizeof(std::int32_t));
  }
  return {ids, lengths};
}

}  // namespace

FloatTensor forward_pass(Model::Impl& impl, DeviceOps& ops, const TokenBatch& tokens, InferenceState* state,
                         bool last_position_only) {
  const auto on_device = ops.use_device();
  ops.begin();
  const std::int64_t B = tokens.batch, L = tokens.length, D = impl.config.d_model, M = B * L;
  const sdk::Context ctx = ops.context();
  const std::vector<std::vector<sdk::TensorView>>* states = state != nullptr ? &ops.state_on_device(*state) : nullptr;
  const auto [ids, lengths] = upload_tokens(ops, tokens);
  float* hidden = ops.take<float>(M * D, "the hidden states");
  float* normed = ops.take<float>(M * D, "the normed hidden states");
  float* mixed = ops.take<float>(M * D, "the mixer outputs");
  ops.embedding(ids, ops.parameter(impl.embedding), hidden, M, D);
  const std::vector<std::int64_t> shape{B, L, D};
  for (std::size_t layer = 0; layer < impl.mixers.size(); ++layer) {
    ops.rms_norm(hidden, ops.parameter_f32(impl.layer_norms[layer]), normed, M, D, impl.config.norm_eps);
    const auto params = parameters(ops, impl.mixer_params[layer]);
    sdk::MixerForwardArgs args;
    args.params = params.data();
    args.x = activation(ops, normed, shape);
    args.y = activation(ops, mixed, shape);
    std::vector<sdk::TensorView> initial;
    if (states != nullptr) {
      const auto& finals = (*states)[layer];
      if (state->seqlen_offset() > 0) {  // a copy: initial and final never alias
        for (const auto& tensor : finals) {
          sdk::TensorView copy = tensor;
          copy.data = ops.take<float>(tensor.numel(), "a copy of the initial state");
          ops.copy(copy.data, tensor.data, static_cast<std::size_t>(tensor.numel()) * sizeof(float));
          initial.push_back(copy);
        }
        args.initial_state = initial.data();
      }
      args.final_state = finals.data();
    }
    check_mixer(impl.mixers[layer]->forward(ctx, args), impl, layer, "");
    ops.add(hidden, mixed, M * D);
  }
  const float* head_input = hidden;
  std::int64_t head_length = L;
  if (last_position_only && L > 1) {
    float* last = ops.take<float>(B * D, "the last hidden states");
    const std::size_t row_bytes = static_cast<std::size_t>(D) * sizeof(float);
    ops.copy_rows(last, row_bytes, hidden + (L - 1) * D, static_cast<std::size_t>(L) * row_bytes, row_bytes, B);
    head_input = last;
    head_length = 1;
  }
  FloatTensor result(head_output_shape(impl, B, head_length));
  float* output = ops.output(result);
  run_head(impl, ops, ctx, head_input, normed, B, head_length, last_position_only ? nullptr : lengths, output,
           result.shape);
  ops.finish_output(result, output);
  if (state != nullptr) StateAccess::advance(*state, L);
  return result;
}

FloatTensor step_pass(Model::Impl& impl, DeviceOps& ops, const std::vector<std::int32_t>& ids, InferenceState& state,
                      std::vector<std::int32_t>* argmax) {
  const auto on_device = ops.use_device();
  const std::int64_t B = state.batch(), D = impl.config.d_model;
  const auto& states = ops.state_on_device(state);
  const std::int32_t* device_ids = ops.step_ids(ids);
  FloatTensor result(head_output_shape(impl, B, 1));
  const std::int64_t vocab = impl.config.vocab_size, stride = result.shape.back();
  if (argmax != nullptr && (result.numel() != B * stride || stride < vocab)) {
    throw Error(fmt::format("head/{} output of shape {} has no row of {} logits per sequence", impl.config.head.name,
                            format_shape(result.shape), vocab));
  }
  // The step writes into the device's fixed buffer (which a CUDA graph bakes in), whether the
  // logits or only their argmax leave the device.
  float* output = ops.step_output(B, result.numel());
  const sdk::Context ctx = ops.context();
  ops.run_step(B, state, [&] {
    float* hidden = ops.take<float>(B * D, "the hidden states");
    float* normed = ops.take<float>(B * D, "the normed hidden states");
    float* mixed = ops.take<float>(B * D, "the mixer outputs");
    ops.embedding(device_ids, ops.parameter(impl.embedding), hidden, B, D);
    const std::vector<std::int64_t> shape{B, D};
    for (std::size_t layer = 0; layer < impl.mixers.size(); ++layer) {
      ops.rms_norm(hidden, ops.parameter_f32(impl.layer_norms[layer]), normed, B, D, impl.config.norm_eps);
      const auto params = parameters(ops, impl.mixer_params[layer]);
      sdk::MixerStepArgs args;
      args.params = params.data();
      args.x = activation(ops, normed, shape);
      args.y = activation(ops, mixed, shape);
      args.state = states[layer].data();
      check_mixer(impl.mixers[layer]->step(ctx, args), impl, layer, " step");
      ops.add(hidden, mixed, B * D);
    }
    run_head(impl, ops, ctx, hidden, normed, B, 1, nullptr, output, result.shape);
  });
  StateAccess::advance(state, 1);
  if (argmax == nullptr) {
    ops.to_host(result.values.data(), output, result.values.size() * sizeof(float));
    return result;
  }
  *argmax = ops.argmax_rows(output, B, stride, vocab);
  return FloatTensor{};
}

namespace {

/// Reports to a GradientsReady callback the parameters whose gradients backward has finished:
/// stages in backward's order (head, final norm, layers last to first, embedding), each
/// parameter at the last stage that adds to it; with `defer` (a device model, whose gradients
/// reach the host at the end), every stage at finish().
class GradientNotifier {
 public:
  GradientNotifier(const Model::Impl& impl, const GradientsReady& ready, bool defer) : ready_(ready), defer_(defer) {
    if (!ready_) return;
    stages_.push_back(impl.head_params);
    stages_.push_back({impl.norm_f});
    for (std::size_t layer = impl.mixers.size(); layer-- > 0;) {
      std::vector<int> stage = impl.mixer_params[layer];
      stage.push_back(impl.layer_norms[layer]);
      stages_.push_back(std::move(stage));
    }
    stages_.push_back({impl.embedding});
    std::vector<std::size_t> last_stage;
    for (std::size_t stage = 0; stage < stages_.size(); ++stage) {
      for (int index : stages_[stage]) {
        if (static_cast<std::size_t>(index) >= last_stage.size()) last_stage.resize(static_cast<std::size_t>(index) + 1);
        last_stage[static_cast<std::size_t>(index)] = stage;
      }
    }
    for (std::size_t stage = 0; stage < stages_.size(); ++stage) {
      auto& list = stages_[stage];
      list.erase(std::remove_if(list.begin(), list.end(),
                                [&](int index) { return last_stage[static_cast<std::size_t>(index)] != stage; }),
                 list.end());
      std::sort(list.begin(), list.end());
      list.erase(std::unique(list.begin(), list.end()), list.end());
    }
  }

  /// Backward has finished the next stage.
  void stage_done() {
    if (ready_ && !defer_ && !stages_[next_].empty()) ready_(stages_[next_]);
    ++next_;
  }

  /// Backward has finished, and the gradients are on the host.
  void finish() {
    if (!ready_ || !defer_) return;
    for (const auto& stage : stages_) {
      if (!stage.empty()) ready_(stage);
    }
  }

 private:
  const GradientsReady& ready_;
  bool defer_;
  std::vector<std::vector<int>> stages_;
  std::size_t next_ = 0;
};

}  // namespace

double training_pass(Model::Impl& impl, DeviceOps& ops, const TokenBatch& tokens, const TrainingTargets& targets,
                     PassKind kind, const GradientsReady& ready) {
  const bool next_token = impl.head_capabilities.objective == sdk::HeadObjective::kNextToken;
  if (next_token) lm_target_count(tokens.batch, tokens.length, tokens.lengths);
  const auto on_device = ops.use_device();
  ops.begin();
  const bool training = kind != PassKind::kEvaluate, recompute = kind == PassKind::kTrainRecompute;
  const std::int64_t B = tokens.batch, L = tokens.length, D = impl.config.d_model, M = B * L;
  const std::size_t n_layer = impl.mixers.size();
  const double eps = impl.config.norm_eps;
  const std::size_t slice_bytes = static_cast<std::size_t>(M * D) * sizeof(float);
  const std::vector<std::int64_t> shape{B, L, D};
  const sdk::Context ctx = ops.context();
  std::size_t activation_bytes = 0;
  if (training) ops.begin_gradients();

  const auto [ids, lengths] = upload_tokens(ops, tokens);
  // Training keeps each layer's input and the final hidden states (n_layer + 1 slices);
  // evaluation updates one slice in place.
  const std::int64_t slices = training ? static_cast<std::int64_t>(n_layer) + 1 : 1;
  float* hidden = ops.take<float>(slices * M * D, "the layer inputs");
  auto layer_input = [&](std::size_t layer) { return training ? hidden + static_cast<std::int64_t>(layer) * M * D : hidden; };
  float* normed = ops.take<float>(M * D, "the normed hidden states");
  float* mixed = ops.take<float>(M * D, "the mixer outputs");
  float* final_normed = ops.take<float>(M * D, "the head input");

  // Saved tensors of layer `layer`'s mixer, as declared for (B, L), taken last in, first out.
  auto take_saved = [&](std::size_t layer) {
    std::vector<sdk::TensorView> saved;
    const sdk::Mixer& mixer = *impl.mixers[layer];
    for (std::int32_t i = 0; i < mixer.saved_count(); ++i) {
      sdk::TensorSpec spec;
      check_mixer(mixer.saved_spec(i, B, L, &spec), impl, layer, "");
      const std::int64_t numel = checked_numel(spec, 0, fmt::format("layer {} mixer/{}", layer, impl.mixer_names[layer]),
                                               fmt::format("saved activation {} for ({}, {})", i, B, L));
      const std::vector<std::int64_t> saved_shape(spec.shape, spec.shape + spec.rank);
      saved.push_back(activation(ops, ops.take<float>(numel, "a mixer's saved activations"), saved_shape));
    }
    return saved;
  };
  auto release_saved = [&](const std::vector<sdk::TensorView>& saved) {
    for (auto tensor = saved.rbegin(); tensor != saved.rend(); ++tensor) ops.release(tensor->data);
  };
  auto mixer_forward = [&](std::size_t layer, const std::vector<sdk::TensorView>& saved) {
    const auto params = parameters(ops, impl.mixer_params[layer]);
    sdk::MixerForwardArgs args;
    args.params = params.data();
    args.x = activation(ops, normed, shape);
    args.y = activation(ops, mixed, shape);
    args.saved = saved.empty() ? nullptr : saved.data();
    check_mixer(impl.mixers[layer]->forward(ctx, args), impl, layer, "");
  };

  // Forward.
  std::vector<std::vector<sdk::TensorView>> saved(n_layer);
  ops.embedding(ids, ops.parameter(impl.embedding), hidden, M, D);
  for (std::size_t layer = 0; layer < n_layer; ++layer) {
    float* input = layer_input(layer);
    float* next = layer_input(layer + 1);
    ops.rms_norm(input, ops.parameter_f32(impl.layer_norms[layer]), normed, M, D, eps);
    if (training) activation_bytes += slice_bytes;
    if (!training) {
      mixer_forward(layer, {});
    } else {
      // With recompute the saved tensors are still written (the mixer runs its training path),
      // then released at once; backward recomputes them.
      std::vector<sdk::TensorView> layer_saved = take_saved(layer);
      mixer_forward(layer, layer_saved);
      if (recompute) {
        release_saved(layer_saved);
      } else {
        for (const auto& tensor : layer_saved) activation_bytes += static_cast<std::size_t>(tensor.numel()) * sizeof(float);
        saved[layer] = std::move(layer_saved);
      }
    }
    if (next != input) ops.copy(next, input, slice_bytes);
    ops.add(next, mixed, M * D);
  }
  ops.rms_norm(layer_input(n_layer), ops.parameter_f32(impl.norm_f), final_normed, M, D, eps);
  const double dropout = impl.head_capabilities.input_dropout;
  std::vector<float> host_mask;
  float* mask = nullptr;
  if (training && dropout > 0.0) {
    host_mask = dropout_mask(static_cast<std::size_t>(M * D), dropout, targets.dropout_seed);
    mask = ops.take<float>(M * D, "the dropout mask");
    ops.to_device(mask, host_mask.data(), slice_bytes);
    ops.multiply(final_normed, mask, M * D);
  }
  const std::vector<std::int64_t> output_shape = head_output_shape(impl, B, L);
  std::int64_t output_count = 1;
  for (auto extent : output_shape) output_count *= extent;
  float* output = ops.take<float>(output_count, "the head output");
  {
    const auto params = parameters(ops, impl.head_params);
    sdk::HeadForwardArgs args;
    args.params = params.data();
    args.hidden = activation(ops, final_normed, shape);
    if (lengths != nullptr) args.lengths = activation(ops, lengths, {B}, sdk::DType::kI32);
    args.output = activation(ops, output, output_shape);
    check_head(impl.head->forward(ctx, args), impl, "");
  }

  // The loss of the head's objective, and its gradient.
  float* grad_output = training ? ops.take<float>(output_count, "the gradient of the head output") : nullptr;
  if (training) activation_bytes += static_cast<std::size_t>(output_count) * sizeof(float) * 2;
  double loss = 0.0;
  if (next_token) {
    const std::int64_t vocab = output_shape.back();
    if (output_count != M * vocab) {
      throw Error(fmt::format("head/{} output of shape {} has no row of logits per position of a ({}, {}) batch",
                              impl.config.head.name, format_shape(output_shape), B, L));
    }
    if (training) ops.zero(grad_output, static_cast<std::size_t>(output_count) * sizeof(float));
    loss = ops.next_token_loss(output, ids, lengths, tokens, vocab, grad_output);
  } else {
    // Class labels: the (B, C) scores are small; the loss and its gradient come from the host.
    FloatTensor scores(output_shape), grad(output_shape);
    ops.to_host(scores.values.data(), output, scores.values.size() * sizeof(float));
    loss = classification_cross_entropy(scores, targets.labels, grad);
    if (training) ops.to_device(grad_output, grad.values.data(), grad.values.size() * sizeof(float));
  }
  if (!training) return loss;
  impl.last_activation_bytes = activation_bytes;

  // Backward.
  GradientNotifier notifier(impl, ready, on_device != nullptr);
  float* grad_final = ops.take<float>(M * D, "the gradient of the head input");
  ops.zero(grad_final, slice_bytes);
  {
    const auto params = parameters(ops, impl.head_params);
    const auto grads = gradients(ops, impl.head_params);
    sdk::HeadBackwardArgs args;
    args.params = params.data();
    args.hidden = activation(ops, final_normed, shape);
    if (lengths != nullptr) args.lengths = activation(ops, lengths, {B}, sdk::DType::kI32);
    args.grad_output = activation(ops, grad_output, output_shape);
    args.grad_hidden = activation(ops, grad_final, shape);
    args.grad_params = grads.data();
    check_head(impl.head->backward(ctx, args), impl, " backward");
  }
  notifier.stage_done();
  if (mask != nullptr) ops.multiply(grad_final, mask, M * D);
  float* grad_hidden = ops.take<float>(M * D, "the gradient of the hidden states");
  float* grad_normed = ops.take<float>(M * D, "the gradient of the normed hidden states");
  ops.zero(grad_hidden, slice_bytes);
  ops.rms_norm_backward(layer_input(n_layer), ops.parameter_f32(impl.norm_f), grad_final, grad_hidden,
                        ops.gradient(impl.norm_f), M, D, eps);
  notifier.stage_done();
  for (std::size_t layer = n_layer; layer-- > 0;) {
    const float* input = layer_input(layer);
    ops.rms_norm(input, ops.parameter_f32(impl.layer_norms[layer]), normed, M, D, eps);
    std::vector<sdk::TensorView> recomputed;
    if (recompute) {
      recomputed = take_saved(layer);
      mixer_forward(layer, recomputed);
    }
    const std::vector<sdk::TensorView>& layer_saved = recompute ? recomputed : saved[layer];
    const auto params = parameters(ops, impl.mixer_params[layer]);
    const auto grads = gradients(ops, impl.mixer_params[layer]);
    ops.zero(grad_normed, slice_bytes);
    sdk::MixerBackwardArgs args;
    args.params = params.data();
    args.x = activation(ops, normed, shape);
    args.saved = layer_saved.empty() ? nullptr : layer_saved.data();
    args.grad_y = activation(ops, grad_hidden, shape);
    args.grad_x = activation(ops, grad_normed, shape);
    args.grad_params = grads.data();
    check_mixer(impl.mixers[layer]->backward(ctx, args), impl, layer, " backward");
    // The residual passes grad_hidden through unchanged; the norm adds its input gradient.
    ops.rms_norm_backward(input, ops.parameter_f32(impl.layer_norms[layer]), grad_normed, grad_hidden,
                          ops.gradient(impl.layer_norms[layer]), M, D, eps);
    if (recompute) release_saved(recomputed);
    notifier.stage_done();
  }
  ops.embedding_backward(ids, grad_hidden, ops.gradient(impl.embedding), M, D);
  notifier.stage_done();
  ops.end_gradients();
  notifier.finish();
  return loss;
}

}  // namespace mambakit::model
