#pragma once
// The backbone's passes, written once for every device (DeviceOps): a forward over whole
// sequences, one decode step, and a training pass (forward with saved activations, the head's
// loss, backward through head, norms, mixers and embedding). Model's inference and training
// methods call them with the model's DeviceOps.

#include <cstdint>
#include <vector>

#include "mambakit/model.hpp"

namespace mambakit::model {

class DeviceOps;

/// Model::forward for checked tokens (the state, when given, for the same batch).
FloatTensor forward_pass(Model::Impl& impl, DeviceOps& ops, const TokenBatch& tokens, InferenceState* state,
                         bool last_position_only);

/// Model::step for checked ids; with `argmax`, only each row's argmax over the first
/// vocab_size outputs is returned there (and the returned tensor is empty).
FloatTensor step_pass(Model::Impl& impl, DeviceOps& ops, const std::vector<std::int32_t>& ids, InferenceState& state,
                      std::vector<std::int32_t>* argmax = nullptr);

enum class PassKind { kEvaluate, kTrain, kTrainRecompute };

/// Model::evaluate_loss (kEvaluate) or accumulate_gradients (which ADDS the loss's gradient to
/// the model's gradients) for checked tokens of a model whose head has a training objective;
/// `ready` as for accumulate_gradients().
double training_pass(Model::Impl& impl, DeviceOps& ops, const TokenBatch& tokens, const TrainingTargets& targets,
                     PassKind kind, const GradientsReady& ready = {});

}  // namespace mambakit::model
