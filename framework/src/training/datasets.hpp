#pragma once
// Training data: a token stream for causal LM, (text, label) examples for classification,
// and deterministic batch sampling from (seed, step) so a resumed run sees the same batches.

#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "mambakit/model.hpp"
#include "mambakit/tokenizer.hpp"

namespace mambakit::training {

/// The whole file as one token stream.
std::vector<std::int32_t> tokenize_text_file(const std::filesystem::path& file, const Tokenizer& tokenizer);

/// `batch` windows of `length` tokens at offsets drawn from `rng`.
TokenBatch sample_windows(const std::vector<std::int32_t>& stream, std::int64_t batch, std::int64_t length,
                          std::mt19937_64& rng);

/// `count` windows evenly spaced over the stream (the validation set).
std::vector<TokenBatch> evenly_spaced_windows(const std::vector<std::int32_t>& stream, std::int64_t count,
                                              std::int64_t batch, std::int64_t length);

struct LabeledExample {
  std::vector<std::int32_t> ids;
  std::int32_t label = 0;
  std::string where;  ///< file:line, for errors about the example
};

/// JSONL ({"text": ..., "label": int or name}) or CSV (text,label with a header line) rows;
/// label names map to their index in `label_names`. Errors name the file and line.
std::vector<LabeledExample> read_labeled_file(const std::filesystem::path& file, const Tokenizer& tokenizer,
                                              const std::vector<std::string>& label_names, std::int64_t max_length);

/// Right-padded batch of examples (pad id 0, lengths set) and their labels.
std::pair<TokenBatch, TrainingTargets> make_labeled_batch(const std::vector<LabeledExample>& examples,
                                                          const std::vector<std::size_t>& indices);

}  // namespace mambakit::training
