// score_sequence(): the next-token negative log-likelihood of a long sequence, window by window
// with the state carried (evaluation.hpp).

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "mambakit/error.hpp"
#include "mambakit/evaluation.hpp"

namespace mambakit {

namespace {

/// -log softmax(logits)[target], in f64.
double negative_log_likelihood(const float* logits, std::int64_t vocab, std::int32_t target) {
  double largest = logits[0];
  for (std::int64_t v = 1; v < vocab; ++v) largest = std::max(largest, static_cast<double>(logits[v]));
  double sum = 0.0;
  for (std::int64_t v = 0; v < vocab; ++v) sum += std::exp(static_cast<double>(logits[v]) - largest);
  return largest + std::log(sum) - static_cast<double>(logits[target]);
}

}  // namespace

SequenceScore score_sequence(Model& model, const std::vector<std::int32_t>& ids, std::int64_t window,
                             const ScoreProgress& progress, ScoreMode mode) {
  if (model.objective() != sdk::HeadObjective::kNextToken) {
    throw Error(fmt::format("head/{} does not predict the next token; scoring a text needs a language-model head",
                            model.config().head.name));
  }
  if (window < 1) throw Error(fmt::format("the window must be >= 1 token, got {}", window));
  const auto count = static_cast<std::int64_t>(ids.size());
  if (count < 2) throw Error(fmt::format("scoring needs at least 2 tokens, got {}", count));
  SequenceScore score;
  score.predicted_tokens = count - 1;
  InferenceState state = model.make_state(1);
  const std::int64_t stride = mode == ScoreMode::kDecode ? 1 : window;
  for (std::int64_t start = 0; start < count - 1; start += stride) {
    const std::int64_t length = std::min(stride, count - 1 - start);
    FloatTensor logits;
    if (mode == ScoreMode::kDecode) {
      logits = model.step({ids[static_cast<std::size_t>(start)]}, state);
    } else {
      TokenBatch batch{1, length, std::vector<std::int32_t>(ids.begin() + start, ids.begin() + start + length)};
      logits = model.forward(batch, &state);
    }
    const std::int64_t vocab = logits.shape.back();
    for (std::int64_t j = 0; j < length; ++j) {
      const std::int32_t target = ids[static_cast<std::size_t>(start + j + 1)];
      if (target < 0 || target >= vocab) {
        throw Error(fmt::format("token {} at position {} is outside the model's vocabulary of {}", target,
                                start + j + 1, vocab));
      }
      score.nll_sum += negative_log_likelihood(logits.values.data() + j * vocab, vocab, target);
    }
    ++score.windows;
    if (progress) progress(start + length, count - 1);
  }
  return score;
}

}  // namespace mambakit
