// Whole models against the independent PyTorch reference (tools/make_fixtures.py): logits and
// final decode states of Hugging Face-layout checkpoints, for every CPU kernel (selective scan and SSD).

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include "fixtures.hpp"
#include "mambakit/model.hpp"
#include "mambakit/safetensors.hpp"

using mambakit::test::max_abs_difference;

TEST_CASE("logits and final states match the PyTorch reference for every fixture and CPU kernel") {
  const auto& host = mambakit::test::in_tree_plugins();
  for (const auto& dir : mambakit::test::model_fixture_dirs()) {
    const auto expected = mambakit::SafetensorsFile::open(dir / "expected.safetensors");
    for (const auto& choice : mambakit::test::cpu_kernel_choices()) {
      mambakit::ModelOptions options;
      options.kernels = choice.kernels;
      mambakit::Model model = mambakit::Model::load(dir, host, options);
      double worst_logits = 0.0, worst_state = 0.0;
      for (const std::int64_t length : {1, 2, 3, 7, 33}) {
        const auto tokens = mambakit::test::fixture_tokens(expected, length);
        auto state = model.make_state(tokens.batch);
        const auto logits = model.forward(tokens, &state);
        worst_logits = std::max(worst_logits,
                                max_abs_difference(logits.values, expected.read_f32(fmt::format("logits.L{}", length))));
        for (std::int64_t layer = 0; layer < state.n_layers(); ++layer) {
          for (const auto* name : {"conv_state", "ssm_state"}) {
            const std::int64_t index = std::string(name) == "conv_state" ? 0 : 1;
            REQUIRE(state.tensor_name(layer, index) == name);
            const auto reference = expected.read_f32(fmt::format("{}.L{}.layer{}", name, length, layer));
            worst_state = std::max(worst_state, max_abs_difference(state.tensor(layer, index).values, reference));
          }
        }
      }
      INFO(dir.filename().string() << " with " << choice.label << ": max |logit error| " << worst_logits
                                   << ", max |state error| " << worst_state);
      CHECK(worst_logits < 1e-4);
      CHECK(worst_state < 1e-4);
    }
  }
}

TEST_CASE("a prompt processed in two chunks gives the logits of one pass") {
  const auto& host = mambakit::test::in_tree_plugins();
  const auto dir = mambakit::test::data_dir() / "models" / "tiny_untied_bias";
  const auto expected = mambakit::SafetensorsFile::open(dir / "expected.safetensors");
  mambakit::Model model = mambakit::Model::load(dir, host);
  const auto tokens = mambakit::test::fixture_tokens(expected, 33);
  const auto full = expected.read_f32("logits.L33");
  const std::int64_t vocab = model.forward(tokens).shape.back();
  for (const std::int64_t split : {1, 2, 5, 17, 32}) {
    auto state = model.make_state(tokens.batch);
    const auto first = mambakit::test::slice(tokens, 0, split);
    const auto second = mambakit::test::slice(tokens, split, tokens.length);
    const auto head = model.forward(first, &state);
    const auto tail = model.forward(second, &state);
    CHECK(state.seqlen_offset() == tokens.length);
    std::vector<float> joined;
    for (std::int64_t b = 0; b < tokens.batch; ++b) {
      joined.insert(joined.end(), head.values.begin() + b * split * vocab, head.values.begin() + (b + 1) * split * vocab);
      joined.insert(joined.end(), tail.values.begin() + b * (tokens.length - split) * vocab,
                    tail.values.begin() + (b + 1) * (tokens.length - split) * vocab);
    }
    INFO("split at " << split);
    CHECK(max_abs_difference(joined, full) < 1e-4);
  }
}
