// Batched generation: each prompt is prefilled alone into its row of a shared state, then
// all unfinished rows take decode steps together.

#include <fmt/format.h>

#include <algorithm>

#include "mambakit/error.hpp"
#include "mambakit/generation.hpp"

namespace mambakit {

namespace {

/// Row `row` of (B, 1, V) logits as a vector.
std::vector<float> row_logits(const FloatTensor& logits, std::int64_t row, std::int64_t vocab) {
  const std::int64_t stride = logits.shape.back();
  return std::vector<float>(logits.values.begin() + row * stride, logits.values.begin() + row * stride + vocab);
}

}  // namespace

GenerationResult generate(Model& model, const std::vector<std::vector<std::int32_t>>& prompts,
                          const GenerationOptions& options, const TokenCallback& on_token) {
  validate(options.sampling);
  if (options.max_new_tokens < 0) {
    throw Error(fmt::format("max_new_tokens must be >= 0, got {}", options.max_new_tokens));
  }
  if (model.objective() != sdk::HeadObjective::kNextToken) {
    throw Error(fmt::format("generation needs a head that predicts the next token; this model's head/{} does not",
                            model.config().head.name));
  }
  const std::int64_t rows = static_cast<std::int64_t>(prompts.size());
  if (rows == 0) throw Error("no prompt to generate from");
  for (std::int64_t r = 0; r < rows; ++r) {
    if (prompts[static_cast<std::size_t>(r)].empty()) throw Error(fmt::format("prompt {} is empty", r));
  }
  const std::int64_t vocab = model.config().vocab_size;
  GenerationResult result;
  result.new_tokens.resize(static_cast<std::size_t>(rows));
  result.stopped_at_eos.assign(static_cast<std::size_t>(rows), false);
  if (options.max_new_tokens == 0) return result;

  InferenceState state = model.make_state(rows);
  std::vector<std::vector<std::int32_t>> history = prompts;
  std::vector<std::mt19937_64> rngs(static_cast<std::size_t>(rows), std::mt19937_64(options.sampling.seed));
  std::vector<std::int32_t> next(static_cast<std::size_t>(rows), 0);
  bool stop_all = false;

  auto record = [&](std::int64_t row, std::int32_t token) {
    const auto r = static_cast<std::size_t>(row);
    next[r] = token;
    history[r].push_back(token);
    result.new_tokens[r].push_back(token);
    if (options.eos_id && token == *options.eos_id) result.stopped_at_eos[r] = true;
    if (on_token && !on_token(row, token)) stop_all = true;
  };
  auto accept = [&](std::int64_t row, std::vector<float> logits) {
    const auto r = static_cast<std::size_t>(row);
    record(row, sample_token(logits, history[r], options.sampling, rngs[r]));
  };
  // Greedy decoding takes each step's argmax from the model (sample_token's choice at
  // temperature 0); on an accelerator the logits then stay on the device and only ids come back.
  const bool greedy = options.sampling.temperature == 0.0 && options.sampling.repetition_penalty == 1.0;

  for (std::int64_t row = 0; row < rows && !stop_all; ++row) {
    const auto& prompt = prompts[static_cast<std::size_t>(row)];
    InferenceState single = model.make_state(1);
    const FloatTensor logits =
        model.forward(TokenBatch{1, static_cast<std::int64_t>(prompt.size()), prompt}, &single, true);
    state.copy_row(single, 0, row);
    accept(row, row_logits(logits, 0, vocab));
  }
  for (std::int64_t produced = 1; produced < options.max_new_tokens && !stop_all; ++produced) {
    const bool all_done = std::all_of(result.stopped_at_eos.begin(), result.stopped_at_eos.end(), [](bool d) { return d; });
    if (all_done) break;
    if (greedy) {
      const std::vector<std::int32_t> ids = model.step_argmax(next, state);
      for (std::int64_t row = 0; row < rows && !stop_all; ++row) {
        if (result.stopped_at_eos[static_cast<std::size_t>(row)]) continue;
        record(row, ids[static_cast<std::size_t>(row)]);
      }
      continue;
    }
    const FloatTensor logits = model.step(next, state);
    for (std::int64_t row = 0; row < rows && !stop_all; ++row) {
      if (result.stopped_at_eos[static_cast<std::size_t>(row)]) continue;
      accept(row, row_logits(logits, row, vocab));
    }
  }
  return result;
}

}  // namespace mambakit
