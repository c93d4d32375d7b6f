#pragma once
/// \file
/// Text generation with a causal LM: sampling rules, per-row EOS, ragged prompts in one batch,
/// streaming, reproducible seeds.

#include <cstdint>
#include <functional>
#include <optional>
#include <random>
#include <vector>

#include "mambakit/model.hpp"

namespace mambakit {

/// How the next token is chosen from a row's logits. Applied in this order: repetition
/// penalty, temperature, top-k, top-p, min-p, then a draw.
struct SamplingOptions {
  double temperature = 1.0;         ///< 0 means greedy (argmax; ties go to the lowest id)
  std::int64_t top_k = 0;           ///< keep the k most likely tokens; 0 keeps all
  double top_p = 1.0;               ///< keep the smallest set whose probability reaches p; 1 keeps all
  double min_p = 0.0;               ///< drop tokens below min_p times the top probability
  double repetition_penalty = 1.0;  ///< > 1 discourages tokens already in the row (CTRL's rule)
  std::uint64_t seed = 0;           ///< each row draws from its own generator seeded with this
};

/// Throws mambakit::Error naming the option and value when a setting is out of range.
void validate(const SamplingOptions& options);

/// Picks a token id from `logits` (V values; modified in place) given the row's `history`
/// (prompt and generated ids, for the repetition penalty), drawing from `rng`.
std::int32_t sample_token(std::vector<float>& logits, const std::vector<std::int32_t>& history,
                          const SamplingOptions& options, std::mt19937_64& rng);

struct GenerationOptions {
  std::int64_t max_new_tokens = 64;
  SamplingOptions sampling;
  /// A row stops after producing this id (which is kept in its output); none: never.
  std::optional<std::int32_t> eos_id;
};

/// Called with (row, token id) as each token is produced; return false to stop every row.
using TokenCallback = std::function<bool(std::int64_t row, std::int32_t token)>;

struct GenerationResult {
  std::vector<std::vector<std::int32_t>> new_tokens;  ///< per row, the generated ids (prompt excluded)
  std::vector<bool> stopped_at_eos;                   ///< per row
};

/// Generates up to max_new_tokens after each prompt. Prompts may differ in length (each is
/// prefilled on its own, then all rows decode together); a row's result is identical to
/// generating it alone with the same options. The state's memory does not grow with the
/// number of tokens generated.
/// Greedy decoding (temperature 0, no repetition penalty) takes each step's tokens from
/// Model::step_argmax: on a CUDA model they are picked on the device and only the B ids of each
/// step come back to the host. Every other setting copies each step's logits rows to the host
/// and samples there. Each prompt's prefill copies its last logits row to the host.
GenerationResult generate(Model& model, const std::vector<std::vector<std::int32_t>>& prompts,
                          const GenerationOptions& options, const TokenCallback& on_token = {});

}  // namespace mambakit
