// Fuzz target: encoding and decoding any bytes with the real GPT-2 tokenizer (a byte-level BPE
// without a normalizer) and the byte tokenizer: decode(encode(text)) gives the text back, byte
// for byte, and incremental decoding gives the same bytes.

#include <memory>
#include <string>
#include <vector>

#include "fuzz_support.hpp"
#include "mambakit/tokenizer.hpp"

namespace {

void check_round_trip(const mambakit::Tokenizer& tokenizer, const std::string& text) {
  const auto ids = tokenizer.encode(text);
  for (const auto id : ids) {
    mambakit::fuzz::require(id >= 0 && id < tokenizer.vocab_size(), "encode() returns ids of the vocabulary");
  }
  mambakit::fuzz::require(tokenizer.decode(ids) == text, "decode(encode(text)) == text");
  mambakit::DecodeStream stream(tokenizer);
  std::string streamed;
  for (const auto id : ids) streamed += stream.push(id);
  streamed += stream.finish();
  mambakit::fuzz::require(streamed == text, "incremental decoding gives the text back");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const auto gpt2 = mambakit::load_tokenizer_json(mambakit::fuzz::test_data_dir() / "tokenizers" / "gpt2" /
                                                         "tokenizer.json");
  static const auto bytes = mambakit::make_byte_tokenizer();
  const std::string text(mambakit::fuzz::as_text(data, size));
  check_round_trip(*gpt2, text);
  check_round_trip(*bytes, text);
  return 0;
}
