// The byte tokenizer, the model-folder lookup and DecodeStream.

#include "mambakit/tokenizer.hpp"

#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>

namespace mambakit {

namespace {

constexpr std::string_view kEndOfText = "<|endoftext|>";
constexpr std::int32_t kByteEosId = 256;

class ByteTokenizer final : public Tokenizer {
 public:
  std::vector<std::int32_t> encode(std::string_view text) const override {
    std::vector<std::int32_t> ids;
    ids.reserve(text.size());
    std::size_t pos = 0;
    while (pos < text.size()) {
      if (text.compare(pos, kEndOfText.size(), kEndOfText) == 0) {
        ids.push_back(kByteEosId);
        pos += kEndOfText.size();
      } else {
        ids.push_back(static_cast<unsigned char>(text[pos]));
        ++pos;
      }
    }
    return ids;
  }

  std::string decode(const std::vector<std::int32_t>& ids) const override {
    std::string text;
    text.reserve(ids.size());
    for (const std::int32_t id : ids) text += token_text(id);
    return text;
  }

  std::int64_t vocab_size() const override { return kByteEosId + 1; }
  std::optional<std::int32_t> eos_id() const override { return kByteEosId; }

  std::string token_text(std::int32_t id) const override {
    if (id >= 0 && id < 256) return std::string(1, static_cast<char>(id));
    if (id == kByteEosId) return std::string(kEndOfText);
    return {};
  }
};

// The length of the UTF-8 sequence a lead byte starts: 1 for ASCII, 2..4 for a valid lead byte,
// 0 for a byte that cannot start a character (a continuation byte, 0xC0, 0xC1, 0xF5..0xFF).
std::size_t sequence_length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if (lead >= 0xC2 && lead <= 0xDF) return 2;
  if (lead >= 0xE0 && lead <= 0xEF) return 3;
  if (lead >= 0xF0 && lead <= 0xF4) return 4;
  return 0;
}

// Whether `byte` may follow `lead` as its first continuation byte (excludes overlong forms,
// surrogates and code points above U+10FFFF).
bool valid_second_byte(unsigned char lead, unsigned char byte) {
  if (lead == 0xE0) return byte >= 0xA0 && byte <= 0xBF;
  if (lead == 0xED) return byte >= 0x80 && byte <= 0x9F;
  if (lead == 0xF0) return byte >= 0x90 && byte <= 0xBF;
  if (lead == 0xF4) return byte >= 0x80 && byte <= 0x8F;
  return (byte & 0xC0) == 0x80;
}

// The length of the tail of `bytes` that is the start of a valid but incomplete UTF-8 character,
// i.e. what later bytes may still complete; 0 when there is none.
std::size_t incomplete_tail(std::string_view bytes) {
  const std::size_t size = bytes.size();
  for (std::size_t back = 1; back <= 3 && back <= size; ++back) {
    const auto lead = static_cast<unsigned char>(bytes[size - back]);
    if ((lead & 0xC0) == 0x80) continue;  // a continuation byte: look further back
    const std::size_t length = sequence_length(lead);
    if (length <= back) return 0;  // complete, or not a lead byte
    for (std::size_t i = 1; i < back; ++i) {
      const auto byte = static_cast<unsigned char>(bytes[size - back + i]);
      if (i == 1 ? !valid_second_byte(lead, byte) : (byte & 0xC0) != 0x80) return 0;
    }
    return back;
  }
  return 0;
}

}  // namespace

std::unique_ptr<Tokenizer> make_byte_tokenizer() { return std::make_unique<ByteTokenizer>(); }

std::unique_ptr<Tokenizer> load_model_tokenizer(const std::filesystem::path& model_dir) {
  std::error_code error;
  const std::filesystem::path json_file = model_dir / "tokenizer.json";
  if (std::filesystem::exists(json_file, error)) return load_tokenizer_json(json_file);
  if (std::filesystem::exists(model_dir / "byte_tokenizer", error)) return make_byte_tokenizer();
  return nullptr;
}

DecodeStream::DecodeStream(const Tokenizer& tokenizer) : tokenizer_(&tokenizer) {}

std::string DecodeStream::push(std::int32_t id) {
  pending_ += tokenizer_->token_text(id);
  const std::size_t held = incomplete_tail(pending_);
  std::string ready = pending_.substr(0, pending_.size() - held);
  pending_.erase(0, pending_.size() - held);
  return ready;
}

std::string DecodeStream::finish() {
  std::string rest;
  rest.swap(pending_);
  return rest;
}

}  // namespace mambakit
