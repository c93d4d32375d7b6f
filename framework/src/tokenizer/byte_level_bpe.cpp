// Hugging Face tokenizer.json byte-level BPE (GPT-2, GPT-NeoX), matching `tokenizers` exactly:
//   1. added tokens with normalized=false are split off the raw text (leftmost-longest);
//   2. each remaining piece is normalized (NFC for GPT-NeoX) and the normalized=true added tokens
//      are split off it;
//   3. the ByteLevel pre-tokenizer splits each remaining piece with the GPT-2 pattern
//        's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//      (matched by hand over code points), and maps every byte to a printable character;
//   4. BPE merges each word, always taking the pair of lowest rank, leftmost on ties.
// Decoding maps each token's characters back to bytes; added tokens decode to their content.

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <functional>
#include <iterator>
#include <limits>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <queue>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "mambakit/config.hpp"
#include "mambakit/error.hpp"
#include "mambakit/input_limits.hpp"
#include "mambakit/tokenizer.hpp"
#include "unicode.hpp"

namespace mambakit {

namespace {

using nlohmann::json;
using unicode::CharClass;

constexpr std::string_view kEndOfText = "<|endoftext|>";

// ---------------------------------------------------------------------------------------------
// Reading tokenizer.json

// The key paths and file of one tokenizer.json, for error messages.
class JsonReader {
 public:
  explicit JsonReader(std::string file) : file_(std::move(file)) {}

  [[noreturn]] void fail(std::string_view key, std::string_view problem) const {
    throw Error(fmt::format("{}: {} {}", file_, key, problem));
  }

  const json& member(const json& parent_value, std::string_view parent, const char* name) const {
    const auto it = parent_value.find(name);
    if (it == parent_value.end()) fail(join(parent, name), "is missing");
    return *it;
  }

  const json& object(const json& parent_value, std::string_view parent, const char* name) const {
    const json& value = member(parent_value, parent, name);
    if (!value.is_object()) fail(join(parent, name), fmt::format("is {}, not an object", brief(value)));
    return value;
  }

  bool flag(const json& parent_value, std::string_view parent, const char* name, bool fallback) const {
    const auto it = parent_value.find(name);
    if (it == parent_value.end() || it->is_null()) return fallback;
    if (!it->is_boolean()) fail(join(parent, name), fmt::format("is {}, not true or false", brief(*it)));
    return it->get<bool>();
  }

  std::optional<std::string> string(const json& parent_value, std::string_view parent, const char* name) const {
    const auto it = parent_value.find(name);
    if (it == parent_value.end() || it->is_null()) return std::nullopt;
    if (!it->is_string()) fail(join(parent, name), fmt::format("is {}, not a string", brief(*it)));
    return it->get<std::string>();
  }

  std::int32_t id(const json& value, std::string_view key) const {
    // Ids index tables of the largest id's size: one beyond any vocabulary is refused before
    // those are allocated (kMaxVocabSize, the limit of a model's vocabulary too).
    if (!value.is_number_integer() || value.get<std::int64_t>() < 0 || value.get<std::int64_t>() >= kMaxVocabSize) {
      fail(key, fmt::format("is {}, not a token id (an integer in [0, {}))", brief(value), kMaxVocabSize));
    }
    return static_cast<std::int32_t>(value.get<std::int64_t>());
  }

  // root[name], which must be an object of "type": "ByteLevel".
  const json& byte_level_component(const json& root, const char* name) const {
    const json& component = member(root, "", name);
    if (!component.is_object()) {
      fail(name, fmt::format("is {}: mambakit reads byte-level BPE tokenizers (ByteLevel)", brief(component)));
    }
    const std::string type = string(component, name, "type").value_or("");
    if (type != "ByteLevel") {
      fail(join(name, "type"),
           fmt::format("= \"{}\" is not supported: mambakit reads byte-level BPE tokenizers (ByteLevel)", type));
    }
    return component;
  }

  static std::string join(std::string_view parent, std::string_view name) {
    return parent.empty() ? std::string(name) : fmt::format("{}.{}", parent, name);
  }

  // A short rendering of a JSON value for messages.
  static std::string brief(const json& value) {
    std::string text = value.dump(-1, ' ', false, json::error_handler_t::replace);
    if (text.size() > 60) text = text.substr(0, 57) + "...";
    return text;
  }

 private:
  std::string file_;
};

// ---------------------------------------------------------------------------------------------
// The byte <-> character mapping of GPT-2's byte-level BPE: printable bytes map to themselves,
// the other 68 bytes to U+0100 upwards, in byte order.

struct ByteLevelTables {
  std::array<std::string, 256> byte_to_text;   // UTF-8 of the character standing for each byte
  std::array<std::int16_t, 324> char_to_byte;  // code point -> byte, or -1

  ByteLevelTables() {
    char_to_byte.fill(-1);
    int next = 256;
    for (int byte = 0; byte < 256; ++byte) {
      const bool printable = (byte >= '!' && byte <= '~') || (byte >= 0xA1 && byte <= 0xAC) || byte >= 0xAE;
      const int code_point = printable ? byte : next++;
      char_to_byte[static_cast<std::size_t>(code_point)] = static_cast<std::int16_t>(byte);
      std::string& text = byte_to_text[static_cast<std::size_t>(byte)];
      if (code_point < 0x80) {
        text.push_back(static_cast<char>(code_point));
      } else {
        text.push_back(static_cast<char>(0xC0 | (code_point >> 6)));
        text.push_back(static_cast<char>(0x80 | (code_point & 0x3F)));
      }
    }
  }

  // The bytes a token's characters stand for, or nullopt when a character stands for no byte.
  std::optional<std::string> to_bytes(std::string_view token) const {
    std::string bytes;
    std::size_t pos = 0;
    while (pos < token.size()) {
      const unicode::Char c = unicode::char_at(token, pos);
      if (c.code_point < 0 || static_cast<std::size_t>(c.code_point) >= char_to_byte.size() ||
          char_to_byte[static_cast<std::size_t>(c.code_point)] < 0) {
        return std::nullopt;
      }
      bytes.push_back(static_cast<char>(char_to_byte[static_cast<std::size_t>(c.code_point)]));
      pos += c.length;
    }
    return bytes;
  }
};

const ByteLevelTables& byte_level_tables() {
  static const ByteLevelTables tables;
  return tables;
}

// ---------------------------------------------------------------------------------------------
// Added tokens

struct AddedToken {
  std::int32_t id = 0;
  std::string content;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = true;
  bool special = false;
};

// One piece of a split text: an added token's id, or text (id < 0) still to be tokenized.
struct Piece {
  std::int32_t id = -1;
  std::size_t begin = 0;
  std::size_t end = 0;
};

// Leftmost-longest matching of a set of added tokens over bytes, with `tokenizers`' handling of
// single_word, lstrip and rstrip. A byte trie: tokens are few and short.
class AddedTokenMatcher {
 public:
  AddedTokenMatcher() : nodes_(1) {}

  void add(const AddedToken& token, std::string pattern) {
    if (pattern.empty()) return;
    std::size_t node = 0;
    for (const char byte : pattern) {
      auto& children = nodes_[node].children;
      const auto it = std::find_if(children.begin(), children.end(),
                                   [&](const auto& child) { return child.first == static_cast<unsigned char>(byte); });
      if (it != children.end()) {
        node = it->second;
      } else {
        children.emplace_back(static_cast<unsigned char>(byte), nodes_.size());
        node = nodes_.size();
        nodes_.emplace_back();
      }
    }
    if (nodes_[node].token < 0) nodes_[node].token = static_cast<std::int32_t>(tokens_.size());
    tokens_.push_back(token);
    first_byte_[static_cast<unsigned char>(pattern.front())] = true;
  }

  [[nodiscard]] bool empty() const { return tokens_.empty(); }

  // Splits `text` into added tokens and the text between them (no empty text pieces).
  void split(std::string_view text, std::vector<Piece>& pieces) const {
    std::size_t start_offset = 0;  // end of the previous piece
    std::size_t pos = 0;           // where the search for the next match resumes
    while (pos < text.size()) {
      if (!first_byte_[static_cast<unsigned char>(text[pos])]) {
        ++pos;
        continue;
      }
      std::int32_t matched = -1;
      std::size_t match_end = pos;
      std::size_t node = 0;
      for (std::size_t i = pos; i < text.size(); ++i) {
        const auto& children = nodes_[node].children;
        const auto byte = static_cast<unsigned char>(text[i]);
        const auto it =
            std::find_if(children.begin(), children.end(), [&](const auto& child) { return child.first == byte; });
        if (it == children.end()) break;
        node = it->second;
        if (nodes_[node].token >= 0) {
          matched = nodes_[node].token;
          match_end = i + 1;
        }
      }
      if (matched < 0) {
        ++pos;
        continue;
      }
      const AddedToken& token = tokens_[static_cast<std::size_t>(matched)];
      std::size_t start = pos;
      std::size_t stop = match_end;
      pos = match_end;
      if (token.single_word && (ends_with_word(text.substr(0, start)) || starts_with_word(text.substr(stop)))) {
        continue;
      }
      if (token.lstrip) start = std::max(start - trailing_space(text.substr(0, start)), start_offset);
      if (token.rstrip) stop += leading_space(text.substr(stop));
      if (start_offset < start) pieces.push_back({-1, start_offset, start});
      pieces.push_back({token.id, start, stop});
      start_offset = stop;
      pos = std::max(pos, stop);
    }
    if (start_offset < text.size()) pieces.push_back({-1, start_offset, text.size()});
  }

 private:
  struct Node {
    std::vector<std::pair<unsigned char, std::size_t>> children;
    std::int32_t token = -1;
  };

  static bool ends_with_word(std::string_view text) {
    std::size_t pos = text.size();
    if (pos == 0) return false;
    do {
      --pos;
    } while (pos > 0 && (static_cast<unsigned char>(text[pos]) & 0xC0) == 0x80);
    return unicode::is_alphanumeric(unicode::char_at(text, pos).code_point);
  }

  static bool starts_with_word(std::string_view text) {
    return !text.empty() && unicode::is_alphanumeric(unicode::char_at(text, 0).code_point);
  }

  // The byte length of the whitespace at the end of `text`.
  static std::size_t trailing_space(std::string_view text) {
    std::size_t begin = text.size();
    while (begin > 0) {
      std::size_t pos = begin - 1;
      while (pos > 0 && (static_cast<unsigned char>(text[pos]) & 0xC0) == 0x80) --pos;
      const unicode::Char c = unicode::char_at(text, pos);
      if (c.char_class != CharClass::kWhitespace || pos + c.length != begin) break;
      begin = pos;
    }
    return text.size() - begin;
  }

  // The byte length of the whitespace at the start of `text`.
  static std::size_t leading_space(std::string_view text) {
    std::size_t end = 0;
    while (end < text.size()) {
      const unicode::Char c = unicode::char_at(text, end);
      if (c.char_class != CharClass::kWhitespace) break;
      end += c.length;
    }
    return end;
  }

  std::vector<Node> nodes_;
  std::vector<AddedToken> tokens_;
  std::array<bool, 256> first_byte_{};
};

// ---------------------------------------------------------------------------------------------
// The GPT-2 pre-tokenizer pattern, over code points. Calls emit(begin, end) for each match, in
// order; the matches cover the text.

template <class Emit>
void split_gpt2_pattern(std::string_view text, Emit&& emit) {
  const std::size_t size = text.size();
  std::size_t pos = 0;
  while (pos < size) {
    const unicode::Char c = unicode::char_at(text, pos);
    // 's|'t|'re|'ve|'m|'ll|'d
    if (c.code_point == '\'' && pos + 1 < size) {
      const char next = text[pos + 1];
      std::size_t length = 0;
      if (next == 's' || next == 't' || next == 'm' || next == 'd') {
        length = 2;
      } else if (pos + 2 < size) {
        const char after = text[pos + 2];
        if ((next == 'r' && after == 'e') || (next == 'v' && after == 'e') || (next == 'l' && after == 'l')) length = 3;
      }
      if (length > 0) {
        emit(pos, pos + length);
        pos += length;
        continue;
      }
    }
    //  ?\p{L}+|  ?\p{N}+|  ?[^\s\p{L}\p{N}]+
    CharClass run_class = c.char_class;
    std::size_t end = pos + c.length;
    if (c.code_point == ' ' && end < size) {
      const unicode::Char next = unicode::char_at(text, end);
      if (next.char_class != CharClass::kWhitespace) {
        run_class = next.char_class;
        end += next.length;
      }
    }
    if (run_class != CharClass::kWhitespace) {
      while (end < size) {
        const unicode::Char next = unicode::char_at(text, end);
        if (next.char_class != run_class) break;
        end += next.length;
      }
      emit(pos, end);
      pos = end;
      continue;
    }
    // \s+(?!\S)|\s+ : a run of whitespace, less its last character when a non-space follows.
    std::size_t last = pos;
    end = pos + c.length;
    while (end < size) {
      const unicode::Char next = unicode::char_at(text, end);
      if (next.char_class != CharClass::kWhitespace) break;
      last = end;
      end += next.length;
    }
    if (end < size && last > pos) end = last;
    emit(pos, end);
    pos = end;
  }
}

// ---------------------------------------------------------------------------------------------
// A bounded, thread-safe cache of BPE results per word.

class WordCache {
 public:
  bool find(std::string_view word, std::size_t hash, std::vector<std::int32_t>& out) const {
    Shard& shard = shards_[hash % kShards];
    const std::lock_guard lock(shard.mutex);
    const auto it = shard.words.find(word);
    if (it == shard.words.end()) return false;
    out.insert(out.end(), it->second.begin(), it->second.end());
    return true;
  }

  void insert(std::string_view word, std::size_t hash, const std::int32_t* ids, std::size_t count) const {
    Shard& shard = shards_[hash % kShards];
    const std::lock_guard lock(shard.mutex);
    if (shard.words.size() >= kWordsPerShard) shard.words.clear();
    shard.words.try_emplace(std::string(word), ids, ids + count);
  }

 private:
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view text) const { return std::hash<std::string_view>{}(text); }
  };
  struct Shard {
    std::mutex mutex;
    std::unordered_map<std::string, std::vector<std::int32_t>, Hash, std::equal_to<>> words;
  };
  static constexpr std::size_t kShards = 16;
  static constexpr std::size_t kWordsPerShard = 8192;

  mutable std::array<Shard, kShards> shards_;
};

// ---------------------------------------------------------------------------------------------
// The tokenizer

struct Merge {
  std::uint32_t rank = 0;
  std::int32_t new_id = 0;
};

class ByteLevelBpe final : public Tokenizer {
 public:
  ByteLevelBpe(const json& root, const std::string& file);

  std::vector<std::int32_t> encode(std::string_view text) const override;
  std::string decode(const std::vector<std::int32_t>& ids) const override;
  std::int64_t vocab_size() const override { return static_cast<std::int64_t>(id_bytes_.size()); }
  std::optional<std::int32_t> eos_id() const override { return eos_id_; }
  std::string token_text(std::int32_t id) const override;

 private:
  void parse_normalizer(const json& root, const JsonReader& reader);
  void parse_pre_tokenizer(const json& root, const JsonReader& reader);
  void parse_decoder(const json& root, const JsonReader& reader);
  void parse_model(const json& model, const JsonReader& reader);
  void parse_added_tokens(const json& root, const JsonReader& reader);

  void encode_normalized(std::string_view text, std::vector<std::int32_t>& ids) const;
  void encode_words(std::string_view text, std::vector<std::int32_t>& ids) const;
  void encode_word(std::string_view word, std::vector<std::int32_t>& ids) const;
  void merge_short(std::vector<std::int32_t>& symbols) const;
  void merge_long(std::vector<std::int32_t>& symbols) const;

  [[nodiscard]] const Merge* find_merge(std::int32_t left, std::int32_t right) const {
    const auto it = merges_.find(pair_key(left, right));
    return it == merges_.end() ? nullptr : &it->second;
  }
  static std::uint64_t pair_key(std::int32_t left, std::int32_t right) {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(left)) << 32) | static_cast<std::uint32_t>(right);
  }

  std::vector<unicode::NormalForm> normalizers_;
  bool add_prefix_space_ = false;
  bool use_regex_ = true;
  bool ignore_merges_ = false;
  std::optional<std::int32_t> unk_id_;
  bool fuse_unk_ = false;

  std::unordered_map<std::string, std::int32_t> vocab_by_bytes_;  // for ignore_merges: word bytes -> id
  std::unordered_map<std::uint64_t, Merge> merges_;               // (left id, right id) -> merge
  std::array<std::int32_t, 256> byte_ids_{};                      // id of each single byte, or -1
  std::vector<std::string> id_bytes_;                             // decoded bytes of each id
  std::vector<bool> id_known_;                                    // whether an id names a token
  std::optional<std::int32_t> eos_id_;

  AddedTokenMatcher raw_tokens_;         // added tokens with normalized=false
  AddedTokenMatcher normalized_tokens_;  // added tokens with normalized=true
  WordCache cache_;
};

ByteLevelBpe::ByteLevelBpe(const json& root, const std::string& file) {
  const JsonReader reader(file);
  if (!root.is_object()) reader.fail("the top level", fmt::format("is {}, not an object", JsonReader::brief(root)));
  parse_normalizer(root, reader);
  parse_pre_tokenizer(root, reader);
  parse_decoder(root, reader);
  parse_model(reader.object(root, "", "model"), reader);
  parse_added_tokens(root, reader);
}

void ByteLevelBpe::parse_normalizer(const json& root, const JsonReader& reader) {
  const auto it = root.find("normalizer");
  if (it == root.end() || it->is_null()) return;
  const std::function<void(const json&, const std::string&)> add = [&](const json& value, const std::string& key) {
    if (!value.is_object()) reader.fail(key, fmt::format("is {}, not an object", JsonReader::brief(value)));
    const std::string type = reader.string(value, key, "type").value_or("");
    if (type == "NFC") {
      normalizers_.push_back(unicode::NormalForm::kNFC);
    } else if (type == "NFD") {
      normalizers_.push_back(unicode::NormalForm::kNFD);
    } else if (type == "NFKC") {
      normalizers_.push_back(unicode::NormalForm::kNFKC);
    } else if (type == "NFKD") {
      normalizers_.push_back(unicode::NormalForm::kNFKD);
    } else if (type == "Sequence") {
      const json& list = reader.member(value, key, "normalizers");
      if (!list.is_array()) reader.fail(key + ".normalizers", "is not an array");
      for (std::size_t i = 0; i < list.size(); ++i) add(list[i], fmt::format("{}.normalizers[{}]", key, i));
    } else {
      reader.fail(key + ".type", fmt::format("= \"{}\" is not supported: mambakit supports the normalizers NFC, NFD, "
                                             "NFKC, NFKD and Sequence of them",
                                             type));
    }
  };
  add(*it, "normalizer");
}

void ByteLevelBpe::parse_pre_tokenizer(const json& root, const JsonReader& reader) {
  const json& pre_tokenizer = reader.byte_level_component(root, "pre_tokenizer");
  add_prefix_space_ = reader.flag(pre_tokenizer, "pre_tokenizer", "add_prefix_space", true);
  use_regex_ = reader.flag(pre_tokenizer, "pre_tokenizer", "use_regex", true);
  static_cast<void>(reader.flag(pre_tokenizer, "pre_tokenizer", "trim_offsets", true));  // offsets only
}

void ByteLevelBpe::parse_decoder(const json& root, const JsonReader& reader) {
  static_cast<void>(reader.byte_level_component(root, "decoder"));
}

void ByteLevelBpe::parse_model(const json& model, const JsonReader& reader) {
  const std::optional<std::string> type = reader.string(model, "model", "type");
  if (type.has_value() && *type != "BPE") {
    reader.fail("model.type", fmt::format("= \"{}\" is not supported: mambakit reads BPE models", *type));
  }
  if (!type.has_value() && !model.contains("merges")) reader.fail("model.type", "is missing");
  const auto dropout = model.find("dropout");
  if (dropout != model.end() && !dropout->is_null() && !(dropout->is_number() && dropout->get<double>() == 0.0)) {
    reader.fail("model.dropout", fmt::format("= {} is not supported: only null", JsonReader::brief(*dropout)));
  }
  if (reader.flag(model, "model", "byte_fallback", false)) {
    reader.fail("model.byte_fallback", "= true is not supported by a byte-level tokenizer");
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (!reader.string(model, "model", key).value_or("").empty()) {
      reader.fail(JsonReader::join("model", key), "is not supported: only null or \"\"");
    }
  }
  ignore_merges_ = reader.flag(model, "model", "ignore_merges", false);
  fuse_unk_ = reader.flag(model, "model", "fuse_unk", false);

  const json& vocab_json = reader.object(model, "model", "vocab");
  std::unordered_map<std::string, std::int32_t> vocab;  // token text -> id
  vocab.reserve(vocab_json.size());
  std::int32_t max_id = -1;
  for (const auto& [token, value] : vocab_json.items()) {
    const std::int32_t id = reader.id(value, fmt::format("model.vocab[\"{}\"]", token));
    vocab.emplace(token, id);
    max_id = std::max(max_id, id);
  }
  id_bytes_.resize(static_cast<std::size_t>(max_id) + 1);
  id_known_.resize(id_bytes_.size());
  const ByteLevelTables& tables = byte_level_tables();
  for (const auto& [token, id] : vocab) {
    std::optional<std::string> bytes = tables.to_bytes(token);
    if (ignore_merges_ && bytes.has_value()) vocab_by_bytes_.emplace(*bytes, id);
    const auto index = static_cast<std::size_t>(id);
    if (id_known_[index]) continue;  // two tokens with one id: `tokenizers` keeps either
    id_bytes_[index] = bytes.has_value() ? std::move(*bytes) : token;
    id_known_[index] = true;
  }
  for (std::size_t byte = 0; byte < 256; ++byte) {
    const auto it = vocab.find(tables.byte_to_text[byte]);
    byte_ids_[byte] = it == vocab.end() ? -1 : it->second;
  }
  if (const auto unk = reader.string(model, "model", "unk_token")) {
    const auto it = vocab.find(*unk);
    if (it == vocab.end()) reader.fail("model.unk_token", fmt::format("= \"{}\" is not in model.vocab", *unk));
    unk_id_ = it->second;
  }
  if (const auto eos = vocab.find(std::string(kEndOfText)); eos != vocab.end()) eos_id_ = eos->second;

  const json& merges = reader.member(model, "model", "merges");
  if (!merges.is_array()) reader.fail("model.merges", fmt::format("is {}, not an array", JsonReader::brief(merges)));
  merges_.reserve(merges.size());
  for (std::size_t rank = 0; rank < merges.size(); ++rank) {
    const json& merge = merges[rank];
    const std::string key = fmt::format("model.merges[{}]", rank);
    std::string left;
    std::string right;
    if (merge.is_string()) {
      const std::string& text = merge.get_ref<const std::string&>();
      const std::size_t space = text.find(' ');
      if (space == std::string::npos || text.find(' ', space + 1) != std::string::npos) {
        reader.fail(key, fmt::format("= {} is not a merge \"left right\" (two tokens and one space)",
                                     JsonReader::brief(merge)));
      }
      left = text.substr(0, space);
      right = text.substr(space + 1);
    } else if (merge.is_array() && merge.size() == 2 && merge[0].is_string() && merge[1].is_string()) {
      left = merge[0].get<std::string>();
      right = merge[1].get<std::string>();
    } else {
      reader.fail(key, fmt::format("= {} is not a merge: expected \"left right\" or [\"left\", \"right\"]",
                                   JsonReader::brief(merge)));
    }
    const auto id_of = [&](const std::string& token) {
      const auto it = vocab.find(token);
      if (it == vocab.end()) {
        reader.fail(key, fmt::format("= {} names the token \"{}\", which is not in model.vocab",
                                     JsonReader::brief(merge), token));
      }
      return it->second;
    };
    const std::int32_t left_id = id_of(left);
    const std::int32_t right_id = id_of(right);
    const std::int32_t new_id = id_of(left + right);
    merges_.insert_or_assign(pair_key(left_id, right_id), Merge{static_cast<std::uint32_t>(rank), new_id});
  }
}

void ByteLevelBpe::parse_added_tokens(const json& root, const JsonReader& reader) {
  const auto it = root.find("added_tokens");
  if (it == root.end() || it->is_null()) return;
  if (!it->is_array()) reader.fail("added_tokens", fmt::format("is {}, not an array", JsonReader::brief(*it)));
  std::vector<AddedToken> tokens;
  for (std::size_t i = 0; i < it->size(); ++i) {
    const json& entry = (*it)[i];
    const std::string key = fmt::format("added_tokens[{}]", i);
    if (!entry.is_object()) reader.fail(key, fmt::format("is {}, not an object", JsonReader::brief(entry)));
    AddedToken token;
    token.id = reader.id(reader.member(entry, key, "id"), key + ".id");
    const std::optional<std::string> content = reader.string(entry, key, "content");
    if (!content.has_value()) reader.fail(key + ".content", "is missing");
    token.content = *content;
    token.single_word = reader.flag(entry, key, "single_word", false);
    token.lstrip = reader.flag(entry, key, "lstrip", false);
    token.rstrip = reader.flag(entry, key, "rstrip", false);
    token.special = reader.flag(entry, key, "special", false);
    token.normalized = reader.flag(entry, key, "normalized", !token.special);
    tokens.push_back(std::move(token));
  }
  for (const AddedToken& token : tokens) {
    const auto index = static_cast<std::size_t>(token.id);
    if (index >= id_bytes_.size()) {
      id_bytes_.resize(index + 1);
      id_known_.resize(index + 1);
    }
    id_bytes_[index] = token.content;
    id_known_[index] = true;
    if (token.content == kEndOfText) eos_id_ = token.id;
    if (token.normalized) {
      std::string pattern = token.content;
      for (const unicode::NormalForm normalizer : normalizers_) {
        pattern = unicode::normalize(pattern, normalizer);
      }
      normalized_tokens_.add(token, std::move(pattern));
    } else {
      raw_tokens_.add(token, token.content);
    }
  }
}

std::vector<std::int32_t> ByteLevelBpe::encode(std::string_view text) const {
  std::vector<std::int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  std::vector<Piece> pieces;
  raw_tokens_.split(text, pieces);
  for (const Piece& piece : pieces) {
    if (piece.id >= 0) {
      ids.push_back(piece.id);
      continue;
    }
    const std::string_view raw = text.substr(piece.begin, piece.end - piece.begin);
    if (normalizers_.empty()) {
      encode_normalized(raw, ids);
      continue;
    }
    std::string normalized(raw);
    for (const unicode::NormalForm normalizer : normalizers_) {
      normalized = unicode::normalize(normalized, normalizer);
    }
    encode_normalized(normalized, ids);
  }
  return ids;
}

void ByteLevelBpe::encode_normalized(std::string_view text, std::vector<std::int32_t>& ids) const {
  if (normalized_tokens_.empty()) {
    encode_words(text, ids);
    return;
  }
  std::vector<Piece> pieces;
  normalized_tokens_.split(text, pieces);
  for (const Piece& piece : pieces) {
    if (piece.id >= 0) {
      ids.push_back(piece.id);
    } else {
      encode_words(text.substr(piece.begin, piece.end - piece.begin), ids);
    }
  }
}

void ByteLevelBpe::encode_words(std::string_view text, std::vector<std::int32_t>& ids) const {
  std::string prefixed;
  if (add_prefix_space_ && !text.empty() && text.front() != ' ') {
    prefixed.reserve(text.size() + 1);
    prefixed.push_back(' ');
    prefixed.append(text);
    text = prefixed;
  }
  if (!use_regex_) {
    if (!text.empty()) encode_word(text, ids);
    return;
  }
  split_gpt2_pattern(text,
                     [&](std::size_t begin, std::size_t end) { encode_word(text.substr(begin, end - begin), ids); });
}

void ByteLevelBpe::encode_word(std::string_view word, std::vector<std::int32_t>& ids) const {
  if (word.size() == 1 && byte_ids_[static_cast<unsigned char>(word[0])] >= 0) {
    ids.push_back(byte_ids_[static_cast<unsigned char>(word[0])]);
    return;
  }
  if (ignore_merges_) {
    const auto it = vocab_by_bytes_.find(std::string(word));
    if (it != vocab_by_bytes_.end()) {
      ids.push_back(it->second);
      return;
    }
  }
  constexpr std::size_t kMaxCachedBytes = 256;
  const bool cacheable = word.size() <= kMaxCachedBytes;
  const std::size_t hash = cacheable ? std::hash<std::string_view>{}(word) : 0;
  if (cacheable && cache_.find(word, hash, ids)) return;

  std::vector<std::int32_t> symbols;
  symbols.reserve(word.size());
  bool previous_unk = false;
  for (const char byte : word) {
    const std::int32_t id = byte_ids_[static_cast<unsigned char>(byte)];
    if (id >= 0) {
      symbols.push_back(id);
      previous_unk = false;
    } else if (unk_id_.has_value() && !(fuse_unk_ && previous_unk)) {
      symbols.push_back(*unk_id_);
      previous_unk = true;
    }
  }
  constexpr std::size_t kShortWord = 48;
  if (symbols.size() <= kShortWord) {
    merge_short(symbols);
  } else {
    merge_long(symbols);
  }
  ids.insert(ids.end(), symbols.begin(), symbols.end());
  if (cacheable) cache_.insert(word, hash, symbols.data(), symbols.size());
}

// Repeatedly merges the lowest-ranked pair (leftmost on ties), keeping each pair's merge in an
// array so that a merge looks up only the two pairs it changes. Quadratic; for short words.
void ByteLevelBpe::merge_short(std::vector<std::int32_t>& symbols) const {
  if (symbols.size() < 2) return;
  constexpr std::uint32_t kNone = std::numeric_limits<std::uint32_t>::max();
  std::array<std::uint32_t, 64> ranks{};
  std::array<std::int32_t, 64> new_ids{};
  std::size_t count = symbols.size();
  const auto look_up = [&](std::size_t k) {
    const Merge* merge = find_merge(symbols[k], symbols[k + 1]);
    ranks[k] = merge == nullptr ? kNone : merge->rank;
    new_ids[k] = merge == nullptr ? -1 : merge->new_id;
  };
  for (std::size_t k = 0; k + 1 < count; ++k) look_up(k);
  while (count > 1) {
    std::size_t best = 0;
    for (std::size_t k = 1; k + 1 < count; ++k) {
      if (ranks[k] < ranks[best]) best = k;
    }
    if (ranks[best] == kNone) break;
    symbols[best] = new_ids[best];
    symbols.erase(symbols.begin() + static_cast<std::ptrdiff_t>(best) + 1);
    --count;
    // Pair best+1 (the merged right symbol and the one after it) is gone; pairs best-1 and best
    // changed.
    if (best + 1 < count) {
      std::copy(ranks.begin() + static_cast<std::ptrdiff_t>(best) + 2,
                ranks.begin() + static_cast<std::ptrdiff_t>(count),
                ranks.begin() + static_cast<std::ptrdiff_t>(best) + 1);
      std::copy(new_ids.begin() + static_cast<std::ptrdiff_t>(best) + 2,
                new_ids.begin() + static_cast<std::ptrdiff_t>(count),
                new_ids.begin() + static_cast<std::ptrdiff_t>(best) + 1);
    }
    if (best > 0) look_up(best - 1);
    if (best + 1 < count) look_up(best);
  }
}

// The same merges for long words, in O(n log n): `tokenizers`' priority queue of candidate pairs
// over a linked list of symbols; stale candidates are skipped when popped.
void ByteLevelBpe::merge_long(std::vector<std::int32_t>& symbols) const {
  struct Symbol {
    std::int32_t id;
    std::ptrdiff_t prev;
    std::ptrdiff_t next;
    bool removed;
  };
  struct Candidate {
    std::uint32_t rank;
    std::size_t pos;
    std::int32_t new_id;
    bool operator>(const Candidate& other) const { return rank != other.rank ? rank > other.rank : pos > other.pos; }
  };
  const auto count = static_cast<std::ptrdiff_t>(symbols.size());
  std::vector<Symbol> list;
  list.reserve(symbols.size());
  for (std::ptrdiff_t i = 0; i < count; ++i) {
    list.push_back({symbols[static_cast<std::size_t>(i)], i - 1, i + 1 < count ? i + 1 : -1, false});
  }
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue;
  const auto push = [&](std::size_t pos) {
    const Symbol& left = list[pos];
    if (left.next < 0) return;
    if (const Merge* merge = find_merge(left.id, list[static_cast<std::size_t>(left.next)].id)) {
      queue.push({merge->rank, pos, merge->new_id});
    }
  };
  for (std::size_t pos = 0; pos < list.size(); ++pos) push(pos);
  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& left = list[top.pos];
    if (left.removed || left.next < 0) continue;
    Symbol& right = list[static_cast<std::size_t>(left.next)];
    const Merge* merge = find_merge(left.id, right.id);
    if (merge == nullptr || merge->new_id != top.new_id) continue;
    left.id = top.new_id;
    right.removed = true;
    left.next = right.next;
    if (right.next >= 0) list[static_cast<std::size_t>(right.next)].prev = static_cast<std::ptrdiff_t>(top.pos);
    if (left.prev >= 0) push(static_cast<std::size_t>(left.prev));
    push(top.pos);
  }
  symbols.clear();
  for (const Symbol& symbol : list) {
    if (!symbol.removed) symbols.push_back(symbol.id);
  }
}

std::string ByteLevelBpe::decode(const std::vector<std::int32_t>& ids) const {
  std::string text;
  text.reserve(ids.size() * 4);
  for (const std::int32_t id : ids) {
    if (id >= 0 && static_cast<std::size_t>(id) < id_bytes_.size()) text += id_bytes_[static_cast<std::size_t>(id)];
  }
  return text;
}

std::string ByteLevelBpe::token_text(std::int32_t id) const {
  if (id < 0 || static_cast<std::size_t>(id) >= id_bytes_.size()) return {};
  return id_bytes_[static_cast<std::size_t>(id)];
}

}  // namespace

std::unique_ptr<Tokenizer> load_tokenizer_json(const std::filesystem::path& file) {
  const std::string text = read_limited_file(file, kMaxTokenizerFileBytes, "tokenizer file");
  check_json_depth(text, file.string());
  json root;
  try {
    root = json::parse(text);
  } catch (const json::exception& error) {
    throw Error(fmt::format("{}: is not valid JSON: {}", file.string(), error.what()));
  }
  return std::make_unique<ByteLevelBpe>(root, file.string());
}

}  // namespace mambakit
