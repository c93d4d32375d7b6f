// The byte-level BPE tokenizers of GPT-NeoX-20B and GPT-2 against Hugging Face `tokenizers`:
// every line of each conformance.jsonl must give exactly the same ids and decoded text.

#include <catch2/catch.hpp>
#include <cstdint>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "mambakit/tokenizer.hpp"
#include "tokenizer_test_support.hpp"

using mambakit::test::read_bytes;
using mambakit::test::tokenizer_file;
using mambakit::test::TempDir;
using mambakit::test::write_bytes;

namespace {

struct ConformanceCase {
  std::string text;
  std::vector<std::int32_t> ids;
  std::string decoded;
};

std::vector<ConformanceCase> read_conformance(const std::string& name) {
  std::ifstream stream(tokenizer_file(name, "conformance.jsonl"));
  REQUIRE(stream);
  std::vector<ConformanceCase> cases;
  std::string line;
  while (std::getline(stream, line)) {
    if (line.empty()) continue;
    const auto entry = nlohmann::json::parse(line);
    cases.push_back({entry.at("text").get<std::string>(), entry.at("ids").get<std::vector<std::int32_t>>(),
                     entry.at("decoded").get<std::string>()});
  }
  return cases;
}

// Checks every case; returns how many matched both ways.
std::size_t check_conformance(const mambakit::Tokenizer& tokenizer, const std::vector<ConformanceCase>& cases) {
  std::size_t passed = 0;
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const ConformanceCase& c = cases[i];
    INFO("line " << i + 1 << ": " << c.text);
    const std::vector<std::int32_t> ids = tokenizer.encode(c.text);
    const std::string decoded = tokenizer.decode(c.ids);
    CHECK(ids == c.ids);
    CHECK(decoded == c.decoded);
    if (ids == c.ids && decoded == c.decoded) ++passed;
  }
  return passed;
}

}  // namespace

TEST_CASE("tokenizer.json BPE matches Hugging Face tokenizers on every conformance line") {
  const std::string name = GENERATE(as<std::string>{}, "gpt-neox-20b", "gpt2");
  INFO("tokenizer " << name);
  const auto tokenizer = mambakit::load_tokenizer_json(tokenizer_file(name, "tokenizer.json"));
  const std::vector<ConformanceCase> cases = read_conformance(name);
  REQUIRE(cases.size() == 107);
  const std::size_t passed = check_conformance(*tokenizer, cases);
  CHECK(passed == cases.size());
  // Repeating the run exercises the word cache.
  CHECK(check_conformance(*tokenizer, cases) == cases.size());
}

TEST_CASE("tokenizer.json BPE reports its vocabulary and end-of-text token") {
  const auto neox = mambakit::load_tokenizer_json(tokenizer_file("gpt-neox-20b", "tokenizer.json"));
  CHECK(neox->vocab_size() == 50277);
  CHECK(neox->eos_id() == std::optional<std::int32_t>(0));
  CHECK(neox->token_text(0) == "<|endoftext|>");
  CHECK(neox->token_text(50276) == "  ");  // the shortest multi-space added token
  CHECK(neox->token_text(50277).empty());
  CHECK(neox->token_text(-1).empty());
  CHECK(neox->decode({50277, 12092, 99999}) == "Hello");

  const auto gpt2 = mambakit::load_tokenizer_json(tokenizer_file("gpt2", "tokenizer.json"));
  CHECK(gpt2->vocab_size() == 50257);
  CHECK(gpt2->eos_id() == std::optional<std::int32_t>(50256));
  CHECK(gpt2->token_text(995) == " world");
}

TEST_CASE("decode is the concatenation of token_text, including partial characters") {
  const auto tokenizer = mambakit::load_tokenizer_json(tokenizer_file("gpt-neox-20b", "tokenizer.json"));
  for (const ConformanceCase& c : read_conformance("gpt-neox-20b")) {
    std::string joined;
    for (const std::int32_t id : c.ids) joined += tokenizer->token_text(id);
    CHECK(joined == tokenizer->decode(c.ids));
  }
}

TEST_CASE("merges given as [left, right] pairs load the same as \"left right\" strings") {
  TempDir dir;
  auto root = nlohmann::json::parse(read_bytes(tokenizer_file("gpt2", "tokenizer.json")));
  for (auto& merge : root["model"]["merges"]) {
    const std::string text = merge.get<std::string>();
    const std::size_t space = text.find(' ');
    merge = nlohmann::json::array({text.substr(0, space), text.substr(space + 1)});
  }
  root["model"]["ignore_merges"] = false;
  write_bytes(dir / "tokenizer.json", root.dump());
  const auto tokenizer = mambakit::load_tokenizer_json(dir / "tokenizer.json");
  const std::vector<ConformanceCase> cases = read_conformance("gpt2");
  CHECK(check_conformance(*tokenizer, cases) == cases.size());
}

TEST_CASE("one tokenizer encodes from several threads at once") {
  const auto tokenizer = mambakit::load_tokenizer_json(tokenizer_file("gpt-neox-20b", "tokenizer.json"));
  const std::vector<ConformanceCase> cases = read_conformance("gpt-neox-20b");
  constexpr int kThreads = 4;
  std::vector<int> failures(kThreads, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 20; ++round) {
        for (const ConformanceCase& c : cases) {
          if (tokenizer->encode(c.text) != c.ids) ++failures[static_cast<std::size_t>(t)];
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  CHECK(failures == std::vector<int>(kThreads, 0));
}
