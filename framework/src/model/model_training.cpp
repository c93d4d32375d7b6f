// Training: Model's gradient and loss methods, over the training pass of backbone_passes.hpp
// (forward with saved activations, the head's loss, backward through head, final norm, blocks
// and embedding; gradients accumulate) on the model's device. The gradients and the
// optimizer's parameters live on the host either way.

#include <fmt/format.h>

#include <algorithm>

#include "mambakit/model.hpp"
#include "model_impl.hpp"
#include "backbone_passes.hpp"

namespace mambakit {

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
  Impl& impl = *impl_;
  impl.check_tokens(tokens);
  impl.check_trainable_objective();
  return model::training_pass(impl, impl.device_ops(), tokens, targets, model::PassKind::kEvaluate);
}

std::size_t Model::last_activation_bytes() const { return impl_->last_activation_bytes; }

double Model::accumulate_gradients(const TokenBatch& tokens, const TrainingTargets& targets, bool recompute,
                                   const GradientsReady& ready) {
  Impl& impl = *impl_;
  impl.check_tokens(tokens);
  impl.check_trainable_objective();
  impl.store.ensure_gradients();
  return model::training_pass(impl, impl.device_ops(), tokens, targets,
                              recompute ? model::PassKind::kTrainRecompute : model::PassKind::kTrain, ready);
}

}  // namespace mambakit
