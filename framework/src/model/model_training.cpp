// Training: forward with saved activations, the loss, and backward through head, final norm,
// blocks (mixer backward + RMSNorm backward + residual) and embedding. Gradients accumulate.
// A CUDA model runs the same steps on its device (DeviceRuntime::accumulate_gradients); the
// gradients and the optimizer's parameters live on the host either way.

#include <fmt/format.h>

#include <algorithm>

#include "mambakit/model.hpp"
#include "model_impl.hpp"
#include "training_objectives.hpp"

namespace mambakit {

namespace {

std::size_t bytes_of(const FloatTensor& tensor) { return tensor.values.size() * sizeof(float); }

}  // namespace

void Model::zero_gradients() { impl_->store.zero_gradients(); }

void Model::parameters_changed() { impl_->device_parameters_stale = true; }

std::vector<ParameterSlice> Model::parameter_slices() {
  impl_->store.ensure_gradients();
  impl_->device_parameters_stale = true;
  std::vector<ParameterSlice> slices;
  const auto& entries = impl_->store.entries();
  for (std::size_t i = 0; i < entries.size(); ++i) {
    slices.push_back({entries[i].name, impl_->store.data(static_cast<int>(i)), impl_->store.gradient(static_cast<int>(i)),
                      entries[i].numel, entries[i].weight_decay});
  }
  return slices;
}

std::vector<float> Model::gradient_values(const std::string& name) const {
  const auto* entry = impl_->store.find(name);
  if (entry == nullptr) throw Error(fmt::format("the model has no parameter {}", name));
  if (!impl_->store.has_gradients()) return std::vector<float>(static_cast<std::size_t>(entry->numel), 0.0f);
  const float* begin = impl_->store.gradient(static_cast<int>(entry - impl_->store.entries().data()));
  return std::vector<float>(begin, begin + entry->numel);
}

double Model::evaluate_loss(const TokenBatch& tokens, const TrainingTargets& targets) {
  impl_->check_trainable_objective();
  if (impl_->device_runtime) {
    impl_->check_tokens(tokens);
    return impl_->runtime().evaluate_loss(tokens, targets);
  }
  if (objective() == sdk::HeadObjective::kNextToken) {
    const FloatTensor logits = forward(tokens);
    FloatTensor unused(logits.shape);
    return model::lm_cross_entropy(logits, tokens, tokens.lengths, unused, impl_->n_threads);
  }
  const FloatTensor scores = forward(tokens);
  FloatTensor unused(scores.shape);
  return model::classification_cross_entropy(scores, targets.labels, unused);
}

std::size_t Model::last_activation_bytes() const { return impl_->last_activation_bytes; }

double Model::accumulate_gradients(const TokenBatch& tokens, const TrainingTargets& targets, bool recompute) {
  Impl& impl = *impl_;
  impl.check_tokens(tokens);
  impl.check_trainable_objective();
  impl.store.ensure_gradients();
  if (impl.device_runtime) return impl.runtime().accumulate_gradients(tokens, targets, recompute);
  const ModelConfig& backbone = impl.config;
  const std::int64_t B = tokens.batch, L = tokens.length, D = backbone.d_model, M = B * L;
  const std::size_t n_layer = impl.mixers.size();
  sdk::Context ctx = impl.context();
  std::size_t activation_bytes = 0;

  // Saved tensors of a layer's mixer, as declared for (B, L).
  auto make_saved = [&](std::size_t layer) {
    std::vector<FloatTensor> saved;
    const sdk::Mixer& mixer = *impl.mixers[layer];
    for (std::int32_t i = 0; i < mixer.saved_count(); ++i) {
      sdk::TensorSpec spec;
      check(mixer.saved_spec(i, B, L, &spec), fmt::format("layer {} mixer/{}", layer, impl.mixer_names[layer]));
      saved.emplace_back(std::vector<std::int64_t>(spec.shape, spec.shape + spec.rank));
    }
    return saved;
  };
  auto run_mixer_forward = [&](std::size_t layer, FloatTensor& normed, FloatTensor& out, std::vector<FloatTensor>& saved) {
    const auto params = impl.views(impl.mixer_params[layer]);
    std::vector<sdk::TensorView> saved_views;
    for (auto& tensor : saved) saved_views.push_back(view_of(tensor));
    sdk::MixerForwardArgs args;
    args.params = params.data();
    args.x = view_of(normed);
    args.y = view_of(out);
    args.saved = saved_views.data();
    check(impl.mixers[layer]->forward(ctx, args), fmt::format("layer {} mixer/{}", layer, impl.mixer_names[layer]));
  };

  // Forward, keeping each layer's input and (without recomputation) the mixers' saved tensors.
  std::vector<FloatTensor> layer_inputs(n_layer);
  std::vector<std::vector<FloatTensor>> saved(n_layer);
  FloatTensor hidden({B, L, D}), normed({B, L, D}), mixed({B, L, D});
  model::embedding_lookup(tokens.ids.data(), impl.store.data(impl.embedding), hidden.values.data(), M, D, impl.n_threads);
  for (std::size_t layer = 0; layer < n_layer; ++layer) {
    layer_inputs[layer] = hidden;
    activation_bytes += bytes_of(hidden);
    model::rms_norm(hidden.values.data(), impl.store.data(impl.layer_norms[layer]), normed.values.data(), M, D,
                    backbone.norm_eps, impl.n_threads);
    std::vector<FloatTensor> layer_saved = make_saved(layer);
    run_mixer_forward(layer, normed, mixed, layer_saved);
    if (!recompute) {
      for (const auto& tensor : layer_saved) activation_bytes += bytes_of(tensor);
      saved[layer] = std::move(layer_saved);
    }
    model::add_in_place(hidden.values.data(), mixed.values.data(), M * D, impl.n_threads);
  }
  FloatTensor final_normed({B, L, D});
  model::rms_norm(hidden.values.data(), impl.store.data(impl.norm_f), final_normed.values.data(), M, D, backbone.norm_eps,
                  impl.n_threads);
  const double dropout = impl.head_capabilities.input_dropout;
  std::vector<float> dropout_mask;
  if (dropout > 0.0) {
    dropout_mask = model::dropout_mask(final_normed.values.size(), dropout, targets.dropout_seed);
    for (std::size_t i = 0; i < dropout_mask.size(); ++i) final_normed.values[i] *= dropout_mask[i];
  }

  // Head and loss.
  const std::string head_owner = fmt::format("head/{}", impl.config.head.name);
  sdk::TensorSpec output_spec;
  check(impl.head->output_spec(B, L, &output_spec), head_owner);
  FloatTensor output(std::vector<std::int64_t>(output_spec.shape, output_spec.shape + output_spec.rank));
  FloatTensor grad_output(output.shape);
  std::vector<std::int32_t> lengths = tokens.lengths;
  const auto head_params = impl.views(impl.head_params);
  std::vector<sdk::TensorView> head_grads;
  for (int index : impl.head_params) head_grads.push_back(impl.store.gradient_view(index));
  sdk::HeadForwardArgs head_args;
  head_args.params = head_params.data();
  head_args.hidden = view_of(final_normed);
  if (!lengths.empty()) head_args.lengths = sdk::make_view(lengths.data(), sdk::DType::kI32, {}, {B});
  head_args.output = view_of(output);
  check(impl.head->forward(ctx, head_args), head_owner);
  activation_bytes += bytes_of(output) * 2;
  const double loss = impl.head_capabilities.objective == sdk::HeadObjective::kNextToken
                          ? model::lm_cross_entropy(output, tokens, lengths, grad_output, impl.n_threads)
                          : model::classification_cross_entropy(output, targets.labels, grad_output);
  impl.last_activation_bytes = activation_bytes;

  // Backward.
  FloatTensor grad_final({B, L, D});
  sdk::HeadBackwardArgs head_backward;
  head_backward.params = head_params.data();
  head_backward.hidden = head_args.hidden;
  head_backward.lengths = head_args.lengths;
  head_backward.grad_output = view_of(grad_output);
  head_backward.grad_hidden = view_of(grad_final);
  head_backward.grad_params = head_grads.data();
  check(impl.head->backward(ctx, head_backward), head_owner + " backward");
  for (std::size_t i = 0; i < dropout_mask.size(); ++i) grad_final.values[i] *= dropout_mask[i];
  FloatTensor grad_hidden({B, L, D});
  model::rms_norm_backward(hidden.values.data(), impl.store.data(impl.norm_f), grad_final.values.data(),
                           grad_hidden.values.data(), impl.store.gradient(impl.norm_f), M, D, backbone.norm_eps,
                           impl.n_threads);
  FloatTensor grad_normed({B, L, D});
  for (std::size_t layer = n_layer; layer-- > 0;) {
    const FloatTensor& input = layer_inputs[layer];
    model::rms_norm(input.values.data(), impl.store.data(impl.layer_norms[layer]), normed.values.data(), M, D,
                    backbone.norm_eps, impl.n_threads);
    std::vector<FloatTensor> layer_saved;
    if (recompute) {
      layer_saved = make_saved(layer);
      run_mixer_forward(layer, normed, mixed, layer_saved);
    } else {
      layer_saved = std::move(saved[layer]);
    }
    const auto params = impl.views(impl.mixer_params[layer]);
    std::vector<sdk::TensorView> saved_views, grads;
    for (auto& tensor : layer_saved) saved_views.push_back(view_of(tensor));
    for (int index : impl.mixer_params[layer]) grads.push_back(impl.store.gradient_view(index));
    std::fill(grad_normed.values.begin(), grad_normed.values.end(), 0.0f);
    sdk::MixerBackwardArgs args;
    args.params = params.data();
    args.x = view_of(normed);
    args.saved = saved_views.data();
    args.grad_y = view_of(grad_hidden);
    args.grad_x = view_of(grad_normed);
    args.grad_params = grads.data();
    check(impl.mixers[layer]->backward(ctx, args),
          fmt::format("layer {} mixer/{} backward", layer, impl.mixer_names[layer]));
    // The residual passes grad_hidden through unchanged; the norm adds its input gradient.
    model::rms_norm_backward(input.values.data(), impl.store.data(impl.layer_norms[layer]), grad_normed.values.data(),
                             grad_hidden.values.data(), impl.store.gradient(impl.layer_norms[layer]), M, D,
                             backbone.norm_eps, impl.n_threads);
  }
  model::embedding_backward(tokens.ids.data(), grad_hidden.values.data(), impl.store.gradient(impl.embedding), M, D);
  return loss;
}

}  // namespace mambakit
