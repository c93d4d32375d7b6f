// Malformed or unsupported tokenizer.json files give a mambakit::Error naming the file and key.

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <string>

#include "mambakit/tokenizer.hpp"
#include "tokenizer_test_support.hpp"

using Catch::Matchers::Contains;
using mambakit::load_tokenizer_json;
using mambakit::test::error_message;
using mambakit::test::TempDir;
using mambakit::test::write_bytes;
using nlohmann::json;

namespace {

// A minimal valid byte-level BPE file: the 256 byte characters, "ab" and one merge.
json minimal_tokenizer() {
  json vocab = json::object();
  const char* printable = "abcdefghijklmnopqrstuvwxyz";
  for (int i = 0; printable[i] != '\0'; ++i) vocab[std::string(1, printable[i])] = i;
  vocab["ab"] = 26;
  return json{{"version", "1.0"},
              {"added_tokens", json::array()},
              {"normalizer", nullptr},
              {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
              {"decoder", {{"type", "ByteLevel"}}},
              {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", json::array({"a b"})}}}};
}

std::string load_error(const TempDir& dir, const json& root) {
  const auto file = dir / "tokenizer.json";
  write_bytes(file, root.dump());
  return error_message([&] { static_cast<void>(load_tokenizer_json(file)); });
}

}  // namespace

TEST_CASE("the minimal tokenizer used below loads") {
  TempDir dir;
  write_bytes(dir / "tokenizer.json", minimal_tokenizer().dump());
  const auto tokenizer = load_tokenizer_json(dir / "tokenizer.json");
  CHECK(tokenizer->encode("abc") == std::vector<std::int32_t>{26, 2});
  CHECK(tokenizer->decode({26, 2}) == "abc");
  CHECK(tokenizer->vocab_size() == 27);
  CHECK_FALSE(tokenizer->eos_id().has_value());
}

TEST_CASE("malformed tokenizer.json files are rejected with the file and key") {
  TempDir dir;
  const std::string file = (dir / "tokenizer.json").string();
  json root = minimal_tokenizer();

  SECTION("a missing file") {
    const auto message = error_message([&] { static_cast<void>(load_tokenizer_json(dir / "absent.json")); });
    CHECK_THAT(message, Contains((dir / "absent.json").string()));
  }
  SECTION("not JSON") {
    write_bytes(dir / "tokenizer.json", "{\"model\": ");
    const auto message = error_message([&] { static_cast<void>(load_tokenizer_json(dir / "tokenizer.json")); });
    CHECK_THAT(message, Contains(file) && Contains("not valid JSON"));
  }
  SECTION("no model") {
    root.erase("model");
    CHECK_THAT(load_error(dir, root), Contains(file) && Contains("model is missing"));
  }
  SECTION("an unknown model type") {
    root["model"]["type"] = "WordPiece";
    CHECK_THAT(load_error(dir, root), Contains(file) && Contains("model.type") && Contains("WordPiece"));
  }
  SECTION("no vocab") {
    root["model"].erase("vocab");
    CHECK_THAT(load_error(dir, root), Contains(file) && Contains("model.vocab is missing"));
  }
  SECTION("a negative id") {
    root["model"]["vocab"]["z"] = -3;
    CHECK_THAT(load_error(dir, root), Contains(file) && Contains("model.vocab[\"z\"]") && Contains("-3"));
  }
  SECTION("merges that are not an array") {
    root["model"]["merges"] = "a b";
    CHECK_THAT(load_error(dir, root), Contains(file) && Contains("model.merges"));
  }
  SECTION("a merge without a space") {
    root["model"]["merges"] = json::array({"a b", "ab"});
    CHECK_THAT(load_error(dir, root), Contains(file) && Contains("model.merges[1]") && Contains("\"ab\""));
  }
  SECTION("a merge with two spaces") {
    root["model"]["merges"] = json::array({"a b c"});
    CHECK_THAT(load_error(dir, root), Contains(file) && Contains("model.merges[0]"));
  }
  SECTION("a merge of a token not in the vocab") {
    root["model"]["merges"] = json::array({"a b", json::array({"a", "Q"})});
    CHECK_THAT(load_error(dir, root), Contains(file) && Contains("model.merges[1]") && Contains("\"Q\""));
  }
  SECTION("a merge whose result is not in the vocab") {
    root["model"]["merges"] = json::array({"b c"});
    CHECK_THAT(load_error(dir, root), Contains(file) && Contains("model.merges[0]") && Contains("\"bc\""));
  }
  SECTION("a merge that is neither a string nor a pair") {
    root["model"]["merges"] = json::array({json::array({"a"})});
    CHECK_THAT(load_error(dir, root), Contains(file) && Contains("model.merges[0]"));
  }
  SECTION("an unsupported pre-tokenizer") {
    root["pre_tokenizer"] = {{"type", "Whitespace"}};
    CHECK_THAT(load_error(dir, root), Contains(file) && Contains("pre_tokenizer.type") && Contains("Whitespace"));
  }
  SECTION("an unsupported decoder") {
    root["decoder"] = {{"type", "WordPiece"}};
    CHECK_THAT(load_error(dir, root), Contains(file) && Contains("decoder.type"));
  }
  SECTION("no decoder") {
    root["decoder"] = nullptr;
    CHECK_THAT(load_error(dir, root), Contains(file) && Contains("decoder is null"));
  }
  SECTION("an unsupported normalizer") {
    root["normalizer"] = {{"type", "Sequence"}, {"normalizers", json::array({{{"type", "Lowercase"}}})}};
    CHECK_THAT(load_error(dir, root),
               Contains(file) && Contains("normalizer.normalizers[0].type") && Contains("Lowercase"));
  }
  SECTION("byte fallback") {
    root["model"]["byte_fallback"] = true;
    CHECK_THAT(load_error(dir, root), Contains(file) && Contains("model.byte_fallback"));
  }
  SECTION("an added token without content") {
    root["added_tokens"] = json::array({{{"id", 30}}});
    CHECK_THAT(load_error(dir, root), Contains(file) && Contains("added_tokens[0].content is missing"));
  }
  SECTION("an unknown token as unk_token") {
    root["model"]["unk_token"] = "<unk>";
    CHECK_THAT(load_error(dir, root), Contains(file) && Contains("model.unk_token") && Contains("<unk>"));
  }
}
