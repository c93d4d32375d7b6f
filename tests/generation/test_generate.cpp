// Generation on a real checkpoint fixture: greedy tokens are the argmax of an independent full
// forward pass; ragged batches equal generating each row alone; per-row EOS; seeds.

#include <catch2/catch.hpp>
#include <algorithm>

#include "fixtures.hpp"
#include "mambakit/generation.hpp"

namespace {

mambakit::Model fixture_model() {
  return mambakit::Model::load(mambakit::test::data_dir() / "models" / "tiny_untied_bias",
                               mambakit::test::in_tree_plugins());
}

const std::vector<std::vector<std::int32_t>> kPrompts = {{5}, {1, 2, 3, 4}, {9, 8, 7, 6, 5, 4, 3, 2, 1}};

}  // namespace

TEST_CASE("greedy generation picks the argmax of the full forward pass at every step") {
  auto model = fixture_model();
  mambakit::GenerationOptions options;
  options.max_new_tokens = 12;
  options.sampling.temperature = 0.0;
  const auto result = mambakit::generate(model, {kPrompts[1]}, options);
  REQUIRE(result.new_tokens[0].size() == 12);
  std::vector<std::int32_t> sequence = kPrompts[1];
  sequence.insert(sequence.end(), result.new_tokens[0].begin(), result.new_tokens[0].end());
  const auto logits = model.forward({1, static_cast<std::int64_t>(sequence.size()), sequence});
  const std::int64_t vocab = logits.shape.back();
  for (std::size_t i = 0; i < 12; ++i) {
    const std::size_t position = kPrompts[1].size() - 1 + i;
    const auto begin = logits.values.begin() + static_cast<std::int64_t>(position) * vocab;
    CHECK(std::max_element(begin, begin + vocab) - begin == result.new_tokens[0][i]);
  }
}

TEST_CASE("each row of a ragged batch equals generating it alone") {
  auto model = fixture_model();
  mambakit::GenerationOptions options;
  options.max_new_tokens = 15;
  options.sampling.temperature = 0.9;
  options.sampling.top_k = 20;
  options.sampling.top_p = 0.95;
  options.sampling.repetition_penalty = 1.2;
  options.sampling.seed = 1234;
  const auto batched = mambakit::generate(model, kPrompts, options);
  for (std::size_t row = 0; row < kPrompts.size(); ++row) {
    const auto alone = mambakit::generate(model, {kPrompts[row]}, options);
    INFO("row " << row);
    CHECK(alone.new_tokens[0] == batched.new_tokens[row]);
  }
  const auto again = mambakit::generate(model, kPrompts, options);
  CHECK(again.new_tokens == batched.new_tokens);
  options.sampling.seed = 4321;
  CHECK(mambakit::generate(model, kPrompts, options).new_tokens != batched.new_tokens);
}

TEST_CASE("a row that produces EOS stops while the others go on") {
  auto model = fixture_model();
  mambakit::GenerationOptions options;
  options.max_new_tokens = 8;
  options.sampling.temperature = 0.0;
  const auto free_run = mambakit::generate(model, kPrompts, options);
  options.eos_id = free_run.new_tokens[0][2];
  const auto stopped = mambakit::generate(model, kPrompts, options);
  const auto& row0 = stopped.new_tokens[0];
  const auto first_eos = std::find(free_run.new_tokens[0].begin(), free_run.new_tokens[0].end(), *options.eos_id);
  CHECK(stopped.stopped_at_eos[0]);
  CHECK(row0.size() == static_cast<std::size_t>(first_eos - free_run.new_tokens[0].begin() + 1));
  CHECK(row0.back() == *options.eos_id);
  for (std::size_t row = 1; row < kPrompts.size(); ++row) {
    const auto& tokens = stopped.new_tokens[row];
    const bool hit = std::find(free_run.new_tokens[row].begin(), free_run.new_tokens[row].end(), *options.eos_id) !=
                     free_run.new_tokens[row].end();
    if (!hit) CHECK(tokens == free_run.new_tokens[row]);
  }
}

TEST_CASE("the streaming callback sees every token in order and can stop generation") {
  auto model = fixture_model();
  mambakit::GenerationOptions options;
  options.max_new_tokens = 6;
  std::vector<std::vector<std::int32_t>> streamed(kPrompts.size());
  const auto result = mambakit::generate(model, kPrompts, options, [&](std::int64_t row, std::int32_t token) {
    streamed[static_cast<std::size_t>(row)].push_back(token);
    return true;
  });
  CHECK(streamed == result.new_tokens);
  int calls = 0;
  const auto cut = mambakit::generate(model, {kPrompts[0]}, options, [&](std::int64_t, std::int32_t) { return ++calls < 3; });
  CHECK(cut.new_tokens[0].size() == 3);
}
