#include "datasets.hpp"

#include <fmt/format.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "mambakit/error.hpp"

namespace mambakit::training {

std::vector<std::int32_t> tokenize_text_file(const std::filesystem::path& file, const Tokenizer& tokenizer) {
  std::ifstream stream(file, std::ios::binary);
  if (!stream) throw Error(fmt::format("{}: cannot open the training data", file.string()));
  std::stringstream text;
  text << stream.rdbuf();
  return tokenizer.encode(text.str());
}

TokenBatch sample_windows(const std::vector<std::int32_t>& stream, std::int64_t batch, std::int64_t length,
                          std::mt19937_64& rng) {
  const std::int64_t size = static_cast<std::int64_t>(stream.size());
  if (size < length) throw Error(fmt::format("the training data has {} tokens, fewer than seq_len {}", size, length));
  std::uniform_int_distribution<std::int64_t> offset(0, size - length);
  TokenBatch tokens{batch, length, {}};
  tokens.ids.reserve(static_cast<std::size_t>(batch * length));
  for (std::int64_t b = 0; b < batch; ++b) {
    const std::int64_t start = offset(rng);
    tokens.ids.insert(tokens.ids.end(), stream.begin() + start, stream.begin() + start + length);
  }
  return tokens;
}

std::vector<TokenBatch> evenly_spaced_windows(const std::vector<std::int32_t>& stream, std::int64_t count,
                                              std::int64_t batch, std::int64_t length) {
  const std::int64_t size = static_cast<std::int64_t>(stream.size());
  if (size < length) throw Error(fmt::format("the validation data has {} tokens, fewer than seq_len {}", size, length));
  const std::int64_t windows = count * batch;
  const std::int64_t spacing = windows > 1 ? (size - length) / (windows - 1) : 0;
  std::vector<TokenBatch> batches;
  for (std::int64_t i = 0; i < count; ++i) {
    TokenBatch tokens{batch, length, {}};
    for (std::int64_t b = 0; b < batch; ++b) {
      const std::int64_t start = (i * batch + b) * spacing;
      tokens.ids.insert(tokens.ids.end(), stream.begin() + start, stream.begin() + start + length);
    }
    batches.push_back(std::move(tokens));
  }
  return batches;
}

namespace {

std::int32_t parse_label(const nlohmann::json& value, const std::vector<std::string>& names, const std::string& where) {
  if (value.is_number_integer()) return value.get<std::int32_t>();
  if (value.is_string()) {
    const std::string name = value.get<std::string>();
    for (std::size_t i = 0; i < names.size(); ++i) {
      if (names[i] == name) return static_cast<std::int32_t>(i);
    }
    try {
      std::size_t used = 0;
      const int number = std::stoi(name, &used);
      if (used == name.size()) return number;
    } catch (const std::exception&) {
    }
    throw Error(fmt::format("{}: label \"{}\" is not one of the config's labels", where, name));
  }
  throw Error(fmt::format("{}: label {} is neither an integer nor a name", where, value.dump()));
}

/// Splits a CSV line of a text and a label, in the order `label_first` says; the text may be
/// quoted with "" escapes.
std::pair<std::string, std::string> split_csv(const std::string& line, bool label_first, const std::string& where) {
  const auto comma = label_first ? line.find(',') : line.rfind(',');
  if (comma == std::string::npos) {
    throw Error(fmt::format("{}: expected {}", where, label_first ? "label,text" : "text,label"));
  }
  std::string text = label_first ? line.substr(comma + 1) : line.substr(0, comma);
  const std::string label = label_first ? line.substr(0, comma) : line.substr(comma + 1);
  if (text.size() >= 2 && text.front() == '"' && text.back() == '"') {
    std::string unquoted;
    for (std::size_t i = 1; i + 1 < text.size(); ++i) {
      unquoted += text[i];
      if (text[i] == '"' && text[i + 1] == '"') ++i;
    }
    text = unquoted;
  }
  return {text, label};
}

/// Whether a CSV header names the label column first; throws unless it names text and label.
bool csv_label_first(const std::string& header, const std::string& where) {
  std::string columns = header;
  if (!columns.empty() && columns.back() == '\r') columns.pop_back();
  if (columns == "text,label") return false;
  if (columns == "label,text") return true;
  throw Error(fmt::format("{}: the header must name the columns text and label (\"text,label\" or \"label,text\"), "
                          "got \"{}\"",
                          where, columns));
}

}  // namespace

std::vector<LabeledExample> read_labeled_file(const std::filesystem::path& file, const Tokenizer& tokenizer,
                                              const std::vector<std::string>& label_names, std::int64_t max_length) {
  std::ifstream stream(file);
  if (!stream) throw Error(fmt::format("{}: cannot open the training data", file.string()));
  const bool csv = file.extension() == ".csv";
  std::vector<LabeledExample> examples;
  std::string line;
  std::int64_t number = 0;
  bool label_first = false;
  while (std::getline(stream, line)) {
    ++number;
    const std::string where = fmt::format("{}:{}", file.string(), number);
    if (csv && number == 1) {
      label_first = csv_label_first(line, where);
      continue;
    }
    if (line.empty()) continue;
    std::string text;
    nlohmann::json label;
    if (csv) {
      auto [field, label_text] = split_csv(line, label_first, where);
      text = field;
      label = label_text;
    } else {
      const auto row = nlohmann::json::parse(line, nullptr, false);
      if (row.is_discarded() || !row.is_object() || !row.contains("text") || !row["text"].is_string() ||
          !row.contains("label")) {
        throw Error(fmt::format("{}: expected {{\"text\": \"...\", \"label\": ...}}", where));
      }
      text = row["text"].get<std::string>();
      label = row["label"];
    }
    LabeledExample example;
    example.ids = tokenizer.encode(text);
    if (example.ids.empty()) throw Error(fmt::format("{}: the text is empty", where));
    if (static_cast<std::int64_t>(example.ids.size()) > max_length) example.ids.resize(static_cast<std::size_t>(max_length));
    example.label = parse_label(label, label_names, where);
    example.where = where;
    examples.push_back(std::move(example));
  }
  if (examples.empty()) throw Error(fmt::format("{}: no examples", file.string()));
  return examples;
}

std::pair<TokenBatch, TrainingTargets> make_labeled_batch(const std::vector<LabeledExample>& examples,
                                                          const std::vector<std::size_t>& indices) {
  std::int64_t length = 1;
  for (auto i : indices) length = std::max<std::int64_t>(length, static_cast<std::int64_t>(examples[i].ids.size()));
  TokenBatch tokens{static_cast<std::int64_t>(indices.size()), length, {}};
  TrainingTargets targets;
  for (auto i : indices) {
    const auto& ids = examples[i].ids;
    tokens.ids.insert(tokens.ids.end(), ids.begin(), ids.end());
    tokens.ids.insert(tokens.ids.end(), static_cast<std::size_t>(length) - ids.size(), 0);
    tokens.lengths.push_back(static_cast<std::int32_t>(ids.size()));
    targets.labels.push_back(examples[i].label);
  }
  return {tokens, targets};
}

}  // namespace mambakit::training
