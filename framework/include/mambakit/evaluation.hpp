#pragma once
/// \file
/// How well a language model predicts a text: the negative log-likelihood of every token after
/// the first, over a long sequence run in windows that carry the recurrent state (no context
/// reset between windows, so the result equals one pass over the whole sequence).

#include <cstdint>
#include <functional>
#include <vector>

#include "mambakit/model.hpp"

namespace mambakit {

/// The sum of -log p(token | everything before it) over the predicted tokens.
struct SequenceScore {
  double nll_sum = 0.0;                ///< nats, summed
  std::int64_t predicted_tokens = 0;   ///< ids.size() - 1
  std::int64_t windows = 0;            ///< forward passes run
};

/// Called after each window with the tokens scored so far and in all.
using ScoreProgress = std::function<void(std::int64_t done, std::int64_t total)>;

/// How the tokens are run: whole windows through the forward pass (prefill), or one token at
/// a time through the decode step (what generation runs: with int8 weights the decode kernels
/// also quantize their inputs, so this measures what a generating user gets).
enum class ScoreMode { kPrefill, kDecode };

/// Scores `ids` (at least 2) with `model`, whose head must predict the next token, `window`
/// tokens per forward pass (>= 1; kDecode ignores it), carrying the state from window to
/// window. The log-softmax is taken in f64 over the model's (padded) vocabulary. Throws
/// mambakit::Error naming the problem for too few ids, a bad window or a head of another
/// objective.
SequenceScore score_sequence(Model& model, const std::vector<std::int32_t>& ids, std::int64_t window,
                             const ScoreProgress& progress = {}, ScoreMode mode = ScoreMode::kPrefill);

}  // namespace mambakit
