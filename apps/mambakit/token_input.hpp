#pragma once
// Reading token ids from a JSON file: a list of equal-length lists of integers.

#include <filesystem>
#include <vector>

#include "mambakit/tensor.hpp"

namespace mambakit::cli {

/// Throws mambakit::Error naming the file and the first problem (unreadable, not JSON, not a
/// list of lists, empty, ragged, not integers).
TokenBatch read_token_file(const std::filesystem::path& file);

/// Like read_token_file(), but rows may differ in length (prompts for generation).
std::vector<std::vector<std::int32_t>> read_ragged_token_file(const std::filesystem::path& file);

}  // namespace mambakit::cli
