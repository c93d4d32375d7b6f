#include "token_input.hpp"

#include <fmt/format.h>

#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "mambakit/error.hpp"

namespace mambakit::cli {

TokenBatch read_token_file(const std::filesystem::path& file) {
  std::ifstream stream(file, std::ios::binary);
  if (!stream) throw Error(fmt::format("{}: cannot open the token file", file.string()));
  std::stringstream text;
  text << stream.rdbuf();
  const auto root = nlohmann::json::parse(text.str(), nullptr, false);
  if (root.is_discarded()) throw Error(fmt::format("{}: not valid JSON", file.string()));
  if (!root.is_array() || root.empty()) {
    throw Error(fmt::format("{}: expected a non-empty JSON list of token lists, e.g. [[1, 2, 3]]", file.string()));
  }
  TokenBatch tokens;
  tokens.batch = static_cast<std::int64_t>(root.size());
  for (std::size_t row = 0; row < root.size(); ++row) {
    const auto& ids = root[row];
    if (!ids.is_array() || ids.empty()) {
      throw Error(fmt::format("{}: row {} is not a non-empty list of token ids", file.string(), row));
    }
    if (row == 0) tokens.length = static_cast<std::int64_t>(ids.size());
    if (static_cast<std::int64_t>(ids.size()) != tokens.length) {
      throw Error(fmt::format("{}: row {} has {} tokens but row 0 has {}; rows must have equal length", file.string(),
                              row, ids.size(), tokens.length));
    }
    for (std::size_t t = 0; t < ids.size(); ++t) {
      const auto& id = ids[t];
      if (!id.is_number_integer() || id.get<std::int64_t>() < 0 ||
          id.get<std::int64_t>() > std::numeric_limits<std::int32_t>::max()) {
        throw Error(fmt::format("{}: row {}, position {}: {} is not a token id", file.string(), row, t, id.dump()));
      }
      tokens.ids.push_back(static_cast<std::int32_t>(id.get<std::int64_t>()));
    }
  }
  return tokens;
}

}  // namespace mambakit::cli
