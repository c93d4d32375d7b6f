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

void DeviceOps::layer_norm(const float*, const float*, const float*, float*, std::int64_t, std::int64_t, double) {
  throw Error(fmt::format("LayerNorm blocks run on the CPU only in this version, not on {}", device_name(device())));
}

void DeviceOps::layer_norm_backward(const float*, const float*, const float*, float*, float*, float*, std::int64_t,
                                    std::int64_t, double) {
  throw Error(fmt::format("LayerNorm blocks run on the CPU only in this version, not on {}", device_name(device())));
}

namespace {

/// Throws naming the sub-block's component (formatted only on failure).
void check_block(const sdk::Status& status, const SubBlock& block, const char* what) {
  if (!status.ok()) throw Error(fmt::format("{}{}: {}", block.owner, what, status.message));
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

/// norm(x) of `rows` rows into `out`: RMSNorm, or LayerNorm when the norm has a bias.
void apply_norm(const Model::Impl& impl, DeviceOps& ops, const NormParams& norm, const float* x, float* out,
                std::int64_t rows) {
  const std::int64_t D = impl.config.d_model;
  const double eps = impl.config.norm_eps;
  if (norm.bias < 0) {
    ops.rms_norm(x, ops.parameter_f32(norm.weight), out, rows, D, eps);
  } else {
    ops.layer_norm(x, ops.parameter_f32(norm.weight), ops.parameter_f32(norm.bias), out, rows, D, eps);
  }
}

/// Backward of apply_norm(): grad_x += d/dx, and the norm's parameter gradients +=.
void norm_backward(const Model::Impl& impl, DeviceOps& ops, const NormParams& norm, const float* x,
                   const float* grad_out, float* grad_x, std::int64_t rows) {
  const std::int64_t D = impl.config.d_model;
  const double eps = impl.config.norm_eps;
  if (norm.bias < 0) {
    ops.rms_norm_backward(x, ops.parameter_f32(norm.weight), grad_out, grad_x, ops.gradient(norm.weight), rows, D, eps);
  } else {
    ops.layer_norm_backward(x, ops.parameter_f32(norm.weight), grad_out, grad_x, ops.gradient(norm.weight),
                            ops.gradient(norm.bias), rows, D, eps);
  }
}

/// The rows' positions (B) as the mixers receive them: on the CPU the state's own; on another
/// device none (no component there reads them yet; see mixer.hpp).
sdk::TensorView positions_view(DeviceOps& ops, const InferenceState* state) {
  if (state == nullptr || ops.device().type != sdk::DeviceType::kCpu) return {};
  const std::vector<std::int64_t>& positions = state->positions();
  return activation(ops, positions.data(), {static_cast<std::int64_t>(positions.size())}, sdk::DType::kI64);
}

/// The final norm of hidden (B, L', D) into `normed`, then the head into `output`.
void run_head(Model::Impl& impl, DeviceOps& ops, const sdk::Context& ctx, const float* hidden, float* normed,
              std::int64_t batch, std::int64_t length, const std::int32_t* lengths, float* output,
              const std::vector<std::int64_t>& output_shape) {
  const std::int64_t D = impl.config.d_model;
  apply_norm(impl, ops, impl.norm_f, hidden, normed, batch * length);
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
  if (state != nullptr) StateAccess::reserve(*state, state->seqlen_offset() + L);
  const std::vector<std::vector<sdk::TensorView>>* states = state != nullptr ? &ops.state_on_device(*state) : nullptr;
  const sdk::TensorView positions = positions_view(ops, state);
  const auto [ids, lengths] = upload_tokens(ops, tokens);
  float* hidden = ops.take<float>(M * D, "the hidden states");
  float* normed = ops.take<float>(M * D, "the normed hidden states");
  float* mixed = ops.take<float>(M * D, "the mixer outputs");
  ops.embedding(ids, ops.parameter(impl.embedding), hidden, M, D);
  const std::vector<std::int64_t> shape{B, L, D};
  for (const SubBlock& block : impl.blocks) {
    apply_norm(impl, ops, block.norm, hidden, normed, M);
    const auto params = parameters(ops, block.params);
    sdk::MixerForwardArgs args;
    args.params = params.data();
    args.x = activation(ops, normed, shape);
    args.y = activation(ops, mixed, shape);
    std::vector<sdk::TensorView> initial;
    if (states != nullptr && block.is_mixer) {
      const auto& finals = (*states)[block.layer];
      if (state->seqlen_offset() > 0) {
        // A copy, so that initial and final do not alias; except a tensor that holds tokens,
        // which is passed as both: its held part stays in place (mixer.hpp).
        const auto& token_axes = StateAccess::token_axes(*state)[block.layer];
        for (std::size_t i = 0; i < finals.size(); ++i) {
          sdk::TensorView copy = finals[i];
          if (token_axes[i] < 0) {
            copy.data = ops.take<float>(copy.numel(), "a copy of the initial state");
            ops.copy(copy.data, finals[i].data, static_cast<std::size_t>(copy.numel()) * sizeof(float));
          }
          initial.push_back(copy);
        }
        args.initial_state = initial.data();
        args.positions = positions;
      }
      args.final_state = finals.data();
    }
    check_block(block.component->forward(ctx, args), block, "");
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
  StateAccess::reserve(state, state.seqlen_offset() + 1);
  const auto& states = ops.state_on_device(state);
  const sdk::TensorView positions = positions_view(ops, &state);
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
    for (const SubBlock& block : impl.blocks) {
      apply_norm(impl, ops, block.norm, hidden, normed, B);
      const auto params = parameters(ops, block.params);
      sdk::MixerStepArgs args;
      args.params = params.data();
      args.x = activation(ops, normed, shape);
      args.y = activation(ops, mixed, shape);
      if (block.is_mixer) {
        args.state = states[block.layer].data();
        args.positions = positions;
      }
      check_block(block.component->step(ctx, args), block, " step");
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
    stages_.push_back(norm_stage({}, impl.norm_f));
    for (auto block = impl.blocks.rbegin(); block != impl.blocks.rend(); ++block) {
      stages_.push_back(norm_stage(block->params, block->norm));
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
  static std::vector<int> norm_stage(std::vector<int> stage, const NormParams& norm) {
    stage.push_back(norm.weight);
    if (norm.bias >= 0) stage.push_back(norm.bias);
    return stage;
  }

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
  const std::size_t n_blocks = impl.blocks.size();
  const std::size_t slice_bytes = static_cast<std::size_t>(M * D) * sizeof(float);
  const std::vector<std::int64_t> shape{B, L, D};
  const sdk::Context ctx = ops.context();
  std::size_t activation_bytes = 0;
  if (training) ops.begin_gradients();

  const auto [ids, lengths] = upload_tokens(ops, tokens);
  // Training keeps each sub-block's input and the final hidden states (n_blocks + 1 slices);
  // evaluation updates one slice in place.
  const std::int64_t slices = training ? static_cast<std::int64_t>(n_blocks) + 1 : 1;
  float* hidden = ops.take<float>(slices * M * D, "the layer inputs");
  auto block_input = [&](std::size_t b) { return training ? hidden + static_cast<std::int64_t>(b) * M * D : hidden; };
  float* normed = ops.take<float>(M * D, "the normed hidden states");
  float* mixed = ops.take<float>(M * D, "the mixer outputs");
  float* final_normed = ops.take<float>(M * D, "the head input");

  // Saved tensors of a sub-block's component, as declared for (B, L), taken last in, first out.
  auto take_saved = [&](const SubBlock& block) {
    std::vector<sdk::TensorView> saved;
    const sdk::Mixer& mixer = *block.component;
    for (std::int32_t i = 0; i < mixer.saved_count(); ++i) {
      sdk::TensorSpec spec;
      check_block(mixer.saved_spec(i, B, L, &spec), block, "");
      const std::int64_t numel = checked_numel(spec, 0, block.owner, fmt::format("saved activation {} for ({}, {})", i, B, L));
      const std::vector<std::int64_t> saved_shape(spec.shape, spec.shape + spec.rank);
      saved.push_back(activation(ops, ops.take<float>(numel, "a mixer's saved activations"), saved_shape));
    }
    return saved;
  };
  auto release_saved = [&](const std::vector<sdk::TensorView>& saved) {
    for (auto tensor = saved.rbegin(); tensor != saved.rend(); ++tensor) ops.release(tensor->data);
  };
  auto block_forward = [&](const SubBlock& block, const std::vector<sdk::TensorView>& saved) {
    const auto params = parameters(ops, block.params);
    sdk::MixerForwardArgs args;
    args.params = params.data();
    args.x = activation(ops, normed, shape);
    args.y = activation(ops, mixed, shape);
    args.saved = saved.empty() ? nullptr : saved.data();
    check_block(block.component->forward(ctx, args), block, "");
  };

  // Forward.
  std::vector<std::vector<sdk::TensorView>> saved(n_blocks);
  ops.embedding(ids, ops.parameter(impl.embedding), hidden, M, D);
  for (std::size_t b = 0; b < n_blocks; ++b) {
    const SubBlock& block = impl.blocks[b];
    float* input = block_input(b);
    float* next = block_input(b + 1);
    apply_norm(impl, ops, block.norm, input, normed, M);
    if (training) activation_bytes += slice_bytes;
    if (!training) {
      block_forward(block, {});
    } else {
      // With recompute the saved tensors are still written (the mixer runs its training path),
      // then released at once; backward recomputes them.
      std::vector<sdk::TensorView> layer_saved = take_saved(block);
      block_forward(block, layer_saved);
      if (recompute) {
        release_saved(layer_saved);
      } else {
        for (const auto& tensor : layer_saved) activation_bytes += static_cast<std::size_t>(tensor.numel()) * sizeof(float);
        saved[b] = std::move(layer_saved);
      }
    }
    if (next != input) ops.copy(next, input, slice_bytes);
    ops.add(next, mixed, M * D);
  }
  apply_norm(impl, ops, impl.norm_f, block_input(n_blocks), final_normed, M);
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
  norm_backward(impl, ops, impl.norm_f, block_input(n_blocks), grad_final, grad_hidden, M);
  notifier.stage_done();
  for (std::size_t b = n_blocks; b-- > 0;) {
    const SubBlock& block = impl.blocks[b];
    const float* input = block_input(b);
    apply_norm(impl, ops, block.norm, input, normed, M);
    std::vector<sdk::TensorView> recomputed;
    if (recompute) {
      recomputed = take_saved(block);
      block_forward(block, recomputed);
    }
    const std::vector<sdk::TensorView>& layer_saved = recompute ? recomputed : saved[b];
    const auto params = parameters(ops, block.params);
    const auto grads = gradients(ops, block.params);
    ops.zero(grad_normed, slice_bytes);
    sdk::MixerBackwardArgs args;
    args.params = params.data();
    args.x = activation(ops, normed, shape);
    args.saved = layer_saved.empty() ? nullptr : layer_saved.data();
    args.grad_y = activation(ops, grad_hidden, shape);
    args.grad_x = activation(ops, grad_normed, shape);
    args.grad_params = grads.data();
    check_block(block.component->backward(ctx, args), block, " backward");
    // The residual passes grad_hidden through unchanged; the norm adds its input gradient.
    norm_backward(impl, ops, block.norm, input, grad_normed, grad_hidden, M);
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
