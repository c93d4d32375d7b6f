// Fuzz target: tokenizer.json loading, then encoding and decoding with whatever loaded (a text
// in several scripts, the special-token syntax, and bytes that are not UTF-8), including
// incremental decoding.

#include <string>
#include <vector>

#include "fuzz_support.hpp"
#include "mambakit/tokenizer.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static mambakit::fuzz::ScratchFile scratch("tokenizer.json");
  const auto& path = scratch.write(mambakit::fuzz::as_text(data, size));
  mambakit::fuzz::expect_clean_errors([&] {
    const auto tokenizer = mambakit::load_tokenizer_json(path);
    const std::string sample = "Hello, world! \xce\xba\xce\xb1\xce\xbb\xce\xb7\xce\xbc\xce\xad\xcf\x81\xce\xb1 "
                               "\xe4\xbd\xa0\xe5\xa5\xbd  \t\n<|endoftext|> 12345 \xff\xfe don't";
    const auto ids = tokenizer->encode(sample);
    for (const auto id : ids) {
      mambakit::fuzz::require(id >= 0 && id < tokenizer->vocab_size(), "encode() returns ids of the vocabulary");
    }
    const auto text = tokenizer->decode(ids);
    mambakit::DecodeStream stream(*tokenizer);
    std::string streamed;
    for (const auto id : ids) streamed += stream.push(id);
    streamed += stream.finish();
    mambakit::fuzz::require(streamed == text, "incremental decoding equals decode()");
    for (const std::int32_t id : {-1, 0, 1, 255, 256, 50000, 1 << 30}) (void)tokenizer->token_text(id);
  });
  return 0;
}
