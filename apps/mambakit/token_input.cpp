#include "token_input.hpp"

#include <fmt/format.h>

#include <limits>
#include <nlohmann/json.hpp>

#include "mambakit/error.hpp"
#include "mambakit/input_limits.hpp"

namespace mambakit::cli {

namespace {

/// The rows of the file; each a non-empty list of ids.
std::vector<std::vector<std::int32_t>> read_rows(const std::filesystem::path& file) {
  const std::string text = read_limited_file(file, kMaxTokenFileBytes, "token file");
  check_json_depth(text, file.string());
  const auto root = nlohmann::json::parse(text, nullptr, false);
  if (root.is_discarded()) throw Error(fmt::format("{}: not valid JSON", file.string()));
  if (!root.is_array() || root.empty()) {
    throw Error(fmt::format("{}: expected a non-empty JSON list of token lists, e.g. [[1, 2, 3]]", file.string()));
  }
  std::vector<std::vector<std::int32_t>> rows;
  for (std::size_t row = 0; row < root.size(); ++row) {
    const auto& ids = root[row];
    if (!ids.is_array() || ids.empty()) {
      throw Error(fmt::format("{}: row {} is not a non-empty list of token ids", file.string(), row));
    }
    rows.emplace_back();
    for (std::size_t t = 0; t < ids.size(); ++t) {
      const auto& id = ids[t];
      if (!id.is_number_integer() || id.get<std::int64_t>() < 0 ||
          id.get<std::int64_t>() > std::numeric_limits<std::int32_t>::max()) {
        throw Error(fmt::format("{}: row {}, position {}: {} is not a token id", file.string(), row, t, id.dump()));
      }
      rows.back().push_back(static_cast<std::int32_t>(id.get<std::int64_t>()));
    }
  }
  return rows;
}

}  // namespace

std::vector<std::vector<std::int32_t>> read_ragged_token_file(const std::filesystem::path& file) {
  return read_rows(file);
}

TokenBatch read_token_file(const std::filesystem::path& file) {
  const auto rows = read_rows(file);
  TokenBatch tokens;
  tokens.batch = static_cast<std::int64_t>(rows.size());
  tokens.length = static_cast<std::int64_t>(rows.front().size());
  for (std::size_t row = 0; row < rows.size(); ++row) {
    if (static_cast<std::int64_t>(rows[row].size()) != tokens.length) {
      throw Error(fmt::format("{}: row {} has {} tokens but row 0 has {}; rows must have equal length", file.string(),
                              row, rows[row].size(), tokens.length));
    }
    tokens.ids.insert(tokens.ids.end(), rows[row].begin(), rows[row].end());
  }
  return tokens;
}

}  // namespace mambakit::cli
