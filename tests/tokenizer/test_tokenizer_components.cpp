// The byte tokenizer, DecodeStream, the model-folder lookup, and the added-token rules of
// tokenizer.json (longest first, lstrip/rstrip/single_word, normalized or raw matching) on a
// small byte-level tokenizer without merges, whose ids are the byte values.

#include <catch2/catch.hpp>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "mambakit/tokenizer.hpp"
#include "tokenizer_test_support.hpp"

using mambakit::DecodeStream;
using mambakit::test::is_valid_utf8;
using mambakit::test::tokenizer_file;
using mambakit::test::TempDir;
using mambakit::test::write_bytes;
using nlohmann::json;
using Ids = std::vector<std::int32_t>;

namespace {

Ids byte_values(const std::string& text) {
  Ids ids;
  for (const char c : text) ids.push_back(static_cast<unsigned char>(c));
  return ids;
}

// GPT-2's byte -> character table, written out independently of the library: printable bytes
// stand for themselves, the others for U+0100 upwards in byte order.
std::string byte_char(int byte) {
  int code_point = byte;
  if (!((byte >= '!' && byte <= '~') || (byte >= 0xA1 && byte <= 0xAC) || byte >= 0xAE)) {
    int n = 0;
    for (int b = 0; b < byte; ++b) {
      if (!((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE)) ++n;
    }
    code_point = 256 + n;
  }
  std::string text;
  if (code_point < 0x80) {
    text.push_back(static_cast<char>(code_point));
  } else {
    text.push_back(static_cast<char>(0xC0 | (code_point >> 6)));
    text.push_back(static_cast<char>(0x80 | (code_point & 0x3F)));
  }
  return text;
}

// A tokenizer.json whose vocabulary is the 256 byte characters (id = byte value) and no merges.
json bytes_only_tokenizer(const json& added_tokens, const json& normalizer = nullptr) {
  json vocab = json::object();
  for (int byte = 0; byte < 256; ++byte) vocab[byte_char(byte)] = byte;
  return json{{"added_tokens", added_tokens},
              {"normalizer", normalizer},
              {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
              {"decoder", {{"type", "ByteLevel"}}},
              {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", json::array()}}}};
}

json added(int id, const std::string& content, bool lstrip = false, bool rstrip = false, bool single_word = false,
           bool normalized = false) {
  return {{"id", id},         {"content", content},         {"lstrip", lstrip},
          {"rstrip", rstrip}, {"single_word", single_word}, {"normalized", normalized},
          {"special", true}};
}

std::unique_ptr<mambakit::Tokenizer> load(const TempDir& dir, const json& root) {
  write_bytes(dir / "tokenizer.json", root.dump());
  return mambakit::load_tokenizer_json(dir / "tokenizer.json");
}

}  // namespace

TEST_CASE("the byte tokenizer round-trips any bytes") {
  const auto tokenizer = mambakit::make_byte_tokenizer();
  CHECK(tokenizer->vocab_size() == 257);
  CHECK(tokenizer->eos_id() == std::optional<std::int32_t>(256));

  std::string all_bytes;
  for (int byte = 0; byte < 256; ++byte) all_bytes.push_back(static_cast<char>(byte));
  CHECK(tokenizer->encode(all_bytes) == byte_values(all_bytes));
  CHECK(tokenizer->decode(tokenizer->encode(all_bytes)) == all_bytes);

  const std::string invalid_utf8 = "h\xC3\xA9llo \xFF\xFE\x80 \xE2\x82 \xED\xA0\x80 \xC0\xAF";
  CHECK(tokenizer->encode(invalid_utf8) == byte_values(invalid_utf8));
  CHECK(tokenizer->decode(tokenizer->encode(invalid_utf8)) == invalid_utf8);

  CHECK(tokenizer->encode("a<|endoftext|>b") == Ids{'a', 256, 'b'});
  CHECK(tokenizer->decode({'a', 256, 'b'}) == "a<|endoftext|>b");
  CHECK(tokenizer->token_text(256) == "<|endoftext|>");
  CHECK(tokenizer->token_text(257).empty());
  CHECK(tokenizer->decode({'x', -1, 1000}) == "x");
}

TEST_CASE("DecodeStream yields whole characters and concatenates to decode()") {
  const auto bytes = mambakit::make_byte_tokenizer();

  SECTION("multi-byte characters are held until complete") {
    DecodeStream stream(*bytes);
    std::vector<std::string> pieces;
    for (const std::int32_t id : byte_values("a\xE2\x82\xAC\xF0\x9F\x98\x80!")) pieces.push_back(stream.push(id));
    CHECK(pieces == std::vector<std::string>{"a", "", "", "\xE2\x82\xAC", "", "", "", "\xF0\x9F\x98\x80", "!"});
    CHECK(stream.finish().empty());
  }
  SECTION("bytes that can never form a character pass through at once") {
    DecodeStream stream(*bytes);
    CHECK(stream.push(0xFF) == "\xFF");
    CHECK(stream.push(0x80) == "\x80");
    CHECK(stream.push(0xE2).empty());
    CHECK(stream.push('a') == std::string{'\xE2', 'a'});
    CHECK(stream.push(0xED).empty());
    CHECK(stream.push(0xA0) == "\xED\xA0");  // a surrogate: invalid after its second byte
    CHECK(stream.push(0xF0).empty());
    CHECK(stream.push(0x9F).empty());
    CHECK(stream.finish() == "\xF0\x9F");
    CHECK(stream.finish().empty());
  }
  SECTION("streaming GPT-NeoX ids gives valid UTF-8 pieces that add up to decode()") {
    const auto neox = mambakit::load_tokenizer_json(tokenizer_file("gpt-neox-20b", "tokenizer.json"));
    std::ifstream lines(tokenizer_file("gpt-neox-20b", "conformance.jsonl"));
    std::string line;
    int split_characters = 0;
    while (std::getline(lines, line)) {
      const Ids ids = json::parse(line).at("ids").get<Ids>();
      DecodeStream stream(*neox);
      std::string joined;
      for (const std::int32_t id : ids) {
        const std::string piece = stream.push(id);
        CHECK(is_valid_utf8(piece));
        if (!is_valid_utf8(neox->token_text(id))) ++split_characters;
        joined += piece;
      }
      joined += stream.finish();
      CHECK(joined == neox->decode(ids));
    }
    CHECK(split_characters > 10);  // the corpus does split characters across tokens
  }
}

TEST_CASE("load_model_tokenizer finds tokenizer.json, else a byte tokenizer marker") {
  TempDir dir;
  CHECK(mambakit::load_model_tokenizer(dir.path()) == nullptr);
  write_bytes(dir / "byte_tokenizer", "");
  const auto bytes = mambakit::load_model_tokenizer(dir.path());
  REQUIRE(bytes != nullptr);
  CHECK(bytes->vocab_size() == 257);
  write_bytes(dir / "tokenizer.json", bytes_only_tokenizer(json::array()).dump());
  const auto bpe = mambakit::load_model_tokenizer(dir.path());
  REQUIRE(bpe != nullptr);
  CHECK(bpe->vocab_size() == 256);
  write_bytes(dir / "tokenizer.json", "[");
  CHECK_THROWS_AS(mambakit::load_model_tokenizer(dir.path()), mambakit::Error);
}

TEST_CASE("added tokens are matched longest first and honour lstrip, rstrip and single_word") {
  TempDir dir;
  const Ids plain_spaces{'a', ' ', 300, ' ', 'b'};

  SECTION("no flags") {
    const auto tokenizer = load(dir, bytes_only_tokenizer(json::array({added(300, "<x>")})));
    CHECK(tokenizer->encode("a <x> b") == plain_spaces);
    CHECK(tokenizer->encode("<x><x>") == Ids{300, 300});
    CHECK(tokenizer->encode("<x") == byte_values("<x"));
    CHECK(tokenizer->decode(plain_spaces) == "a <x> b");
    CHECK(tokenizer->vocab_size() == 301);
  }
  SECTION("the longest token wins at the leftmost position") {
    const auto tokenizer = load(dir, bytes_only_tokenizer(json::array({added(300, "<x>"), added(301, "<x>>")})));
    CHECK(tokenizer->encode("<x>><x>") == Ids{301, 300});
    CHECK(tokenizer->encode("<<x>>") == Ids{'<', 301});
  }
  SECTION("lstrip takes the whitespace before the token") {
    const auto tokenizer = load(dir, bytes_only_tokenizer(json::array({added(300, "<x>", true)})));
    CHECK(tokenizer->encode("a \t<x> b") == Ids{'a', 300, ' ', 'b'});
    CHECK(tokenizer->decode({'a', 300}) == "a<x>");
  }
  SECTION("rstrip takes the whitespace after the token") {
    const auto tokenizer = load(dir, bytes_only_tokenizer(json::array({added(300, "<x>", false, true)})));
    CHECK(tokenizer->encode("a <x>  \nb") == Ids{'a', ' ', 300, 'b'});
  }
  SECTION("single_word tokens match only between non-word characters") {
    const auto tokenizer = load(dir, bytes_only_tokenizer(json::array({added(300, "<x>", false, false, true)})));
    CHECK(tokenizer->encode("a <x> b") == plain_spaces);
    CHECK(tokenizer->encode("a<x> b") == byte_values("a<x> b"));
    CHECK(tokenizer->encode("a <x>b") == byte_values("a <x>b"));
    CHECK(tokenizer->encode("(<x>)") == Ids{'(', 300, ')'});
  }
  SECTION("normalized tokens match the normalized text, the others the raw text") {
    const json nfc = {{"type", "NFC"}};
    const std::string decomposed = "e\xCC\x81";  // e + U+0301
    const std::string composed = "\xC3\xA9";     // U+00E9
    const auto normalized =
        load(dir, bytes_only_tokenizer(json::array({added(300, composed, false, false, false, true)}), nfc));
    CHECK(normalized->encode(decomposed) == Ids{300});
    CHECK(normalized->encode(composed) == Ids{300});
    const auto raw = load(dir, bytes_only_tokenizer(json::array({added(300, composed)}), nfc));
    CHECK(raw->encode(composed) == Ids{300});
    const auto raw_decomposed = load(dir, bytes_only_tokenizer(json::array({added(300, decomposed)}), nfc));
    CHECK(raw_decomposed->encode(decomposed) == Ids{300});
    CHECK(raw_decomposed->encode("x" + decomposed) == Ids{'x', 300});
    CHECK(raw_decomposed->encode(composed) == byte_values(composed));
    const auto normalized_decomposed =
        load(dir, bytes_only_tokenizer(json::array({added(300, decomposed, false, false, false, true)}), nfc));
    CHECK(normalized_decomposed->encode("x" + composed) == Ids{'x', 300});
  }
}

TEST_CASE("tokenizer.json options: add_prefix_space, use_regex, ignore_merges, invalid UTF-8") {
  TempDir dir;
  json root = bytes_only_tokenizer(json::array());

  SECTION("add_prefix_space") {
    root["pre_tokenizer"]["add_prefix_space"] = true;
    const auto tokenizer = load(dir, root);
    CHECK(tokenizer->encode("hi") == Ids{' ', 'h', 'i'});
    CHECK(tokenizer->encode(" hi") == Ids{' ', 'h', 'i'});
  }
  SECTION("use_regex = false makes the whole piece one word") {
    root["model"]["vocab"][byte_char('a') + byte_char(' ')] = 256;
    root["model"]["merges"] = json::array({byte_char('a') + " " + byte_char(' ')});
    CHECK(load(dir, root)->encode("a b") == Ids{'a', ' ', 'b'});
    root["pre_tokenizer"]["use_regex"] = false;
    CHECK(load(dir, root)->encode("a b") == Ids{256, 'b'});
  }
  SECTION("ignore_merges takes a whole word from the vocab") {
    root["model"]["vocab"]["hello"] = 256;
    root["model"]["vocab"]["he"] = 257;
    root["model"]["merges"] = json::array({"h e"});
    CHECK(load(dir, root)->encode("hello") == Ids{257, 'l', 'l', 'o'});
    root["model"]["ignore_merges"] = true;
    CHECK(load(dir, root)->encode("hello hello") == Ids{256, ' ', 257, 'l', 'l', 'o'});
  }
  SECTION("invalid UTF-8 is encoded as bytes and decodes back") {
    const auto tokenizer = load(dir, root);
    const std::string text = "ok\xFF\xC3 \x80z";
    CHECK(tokenizer->encode(text) == byte_values(text));
    CHECK(tokenizer->decode(tokenizer->encode(text)) == text);
  }
}
