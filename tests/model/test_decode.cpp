// Decode: prefill of any length, then one-token steps through the mixers' and scan backends'
// step paths, equals the full forward pass at every position (against the PyTorch fixtures).

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include "fixtures.hpp"
#include "mambakit/model.hpp"
#include "mambakit/safetensors.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <utility>

using mambakit::test::max_abs_difference;

TEST_CASE("prefill plus decode steps equals the full forward, for every CPU kernel") {
  const auto& host = mambakit::test::in_tree_plugins();
  for (const char* fixture : {"tiny_untied_bias", "tiny_no_conv_bias", "tiny_bf16"}) {
    const auto dir = mambakit::test::data_dir() / "models" / fixture;
    const auto expected = mambakit::SafetensorsFile::open(dir / "expected.safetensors");
    const auto tokens = mambakit::test::fixture_tokens(expected, 33);
    const auto full_logits = expected.read_f32("logits.L33");
    const std::int64_t batch = tokens.batch, length = tokens.length;
    for (const auto& choice : mambakit::test::cpu_kernel_choices()) {
      mambakit::ModelOptions options;
      options.kernels = choice.kernels;
      auto model = mambakit::Model::load(dir, host, options);
      const std::int64_t vocab = static_cast<std::int64_t>(full_logits.size()) / (batch * length);
      // Prefills of one token, shorter than d_conv (4), longer, and long; in one pass or in
      // chunks of 3 with the state carried between them.
      for (const auto& [prefill, chunk] : {std::pair<std::int64_t, std::int64_t>{1, 1}, {2, 2}, {5, 5}, {20, 20},
                                           {5, 3}, {20, 3}}) {
        auto state = model.make_state(batch);
        mambakit::FloatTensor prefill_logits;
        for (std::int64_t begin = 0; begin < prefill; begin += chunk) {
          const auto prompt = mambakit::test::slice(tokens, begin, std::min(prefill, begin + chunk));
          prefill_logits = model.forward(prompt, &state, true);
        }
        double worst = 0.0;
        auto compare = [&](const std::vector<float>& logits, std::int64_t position) {
          for (std::int64_t b = 0; b < batch; ++b) {
            const auto* reference = &full_logits[(b * length + position) * vocab];
            for (std::int64_t v = 0; v < vocab; ++v) {
              worst = std::max(worst, static_cast<double>(std::abs(logits[b * vocab + v] - reference[v])));
            }
          }
        };
        compare(prefill_logits.values, prefill - 1);
        for (std::int64_t t = prefill; t < length; ++t) {
          compare(model.step(mambakit::test::slice(tokens, t, t + 1).ids, state).values, t);
        }
        CHECK(state.seqlen_offset() == length);
        INFO(fixture << " " << choice.label << " prefill " << prefill << " in chunks of " << chunk << ": max |logit error| "
                     << worst);
        CHECK(worst < 1e-4);
      }
    }
  }
}

TEST_CASE("an inference state saved to a file continues generation exactly, and reports its size") {
  const auto& host = mambakit::test::in_tree_plugins();
  const auto dir = mambakit::test::data_dir() / "models" / "tiny_untied_bias";
  auto model = mambakit::Model::load(dir, host);
  mambakit::TokenBatch prompt{1, 6, {3, 1, 4, 1, 5, 9}};
  auto state = model.make_state(1);
  model.forward(prompt, &state);
  const auto file = std::filesystem::path(MAMBAKIT_TEST_BINARY_DIR) / "state.safetensors";
  state.save(file);
  const auto direct = model.step({2}, state);

  auto restored = model.make_state(1);
  restored.load(file);
  CHECK(restored.seqlen_offset() == 6);
  CHECK(model.step({2}, restored).values == direct.values);
  const auto info = nlohmann::json::parse(restored.info_json());
  CHECK(info["layers"] == 3);
  CHECK(info["tensors"] == 6);
  CHECK(info["bytes"] == restored.bytes());
  CHECK(info["seqlen_offset"] == 7);
  restored.reset();
  CHECK(restored.seqlen_offset() == 0);

  auto wrong_batch = model.make_state(2);
  CHECK_THROWS_WITH(wrong_batch.load(file), Catch::Matchers::Contains("state.safetensors"));

  // A moved-from state is empty but usable: it reports nothing and copies as empty.
  auto moved = std::move(restored);
  CHECK(moved.n_layers() == 3);
  CHECK(restored.n_layers() == 0);   // NOLINT(bugprone-use-after-move): the documented moved-from state
  CHECK(restored.bytes() == 0);      // NOLINT(bugprone-use-after-move)
  const mambakit::InferenceState copy = restored;  // NOLINT(bugprone-use-after-move)
  CHECK(copy.n_layers() == 0);
  CHECK_THROWS_WITH(model.step({2}, restored), Catch::Matchers::Contains("0 rows"));  // NOLINT(bugprone-use-after-move)
}

TEST_CASE("a Mamba-2 prompt longer than the forward's blocks gives the logits and states of token-by-token decode") {
  // mixer/mamba2 runs a long forward in blocks of 512 tokens, carrying the conv and SSM states
  // between them; the decode step is separate code. 5 tokens first, so that the long forward
  // starts from a state, then 595: blocks of 512 and 83 tokens, two rows.
  const auto& host = mambakit::test::in_tree_plugins();
  for (const auto& dir : mambakit::test::model_fixture_dirs()) {
    if (dir.filename().string().rfind("mamba2_", 0) != 0) continue;
    for (const auto& choice : mambakit::test::cpu_kernel_choices()) {
      if (choice.label.rfind("ssd/", 0) != 0) continue;
      mambakit::ModelOptions options;
      options.kernels = choice.kernels;
      auto model = mambakit::Model::load(dir, host, options);
      const std::int64_t batch = 2, length = 600, prefix = 5;
      const std::int64_t vocab = model.forward(mambakit::TokenBatch{1, 1, {0}}).shape.back();  // padded
      mambakit::TokenBatch tokens{batch, length, {}};
      for (std::int64_t i = 0; i < batch * length; ++i) tokens.ids.push_back((i * 7919 + 13) % model.config().vocab_size);

      auto long_state = model.make_state(batch);
      model.forward(mambakit::test::slice(tokens, 0, prefix), &long_state);
      const auto long_logits = model.forward(mambakit::test::slice(tokens, prefix, length), &long_state);

      auto step_state = model.make_state(batch);
      model.forward(mambakit::test::slice(tokens, 0, prefix), &step_state);
      double worst_logits = 0.0;
      for (std::int64_t t = prefix; t < length; ++t) {
        const auto logits = model.step(mambakit::test::slice(tokens, t, t + 1).ids, step_state);
        for (std::int64_t b = 0; b < batch; ++b) {
          for (std::int64_t v = 0; v < vocab; ++v) {
            const float expected = long_logits.values[(b * (length - prefix) + t - prefix) * vocab + v];
            worst_logits = std::max(worst_logits, static_cast<double>(std::abs(logits.values[b * vocab + v] - expected)));
          }
        }
      }
      double worst_state = 0.0;
      for (std::int64_t layer = 0; layer < long_state.n_layers(); ++layer) {
        for (std::int64_t i = 0; i < 2; ++i) {
          worst_state = std::max(worst_state, max_abs_difference(long_state.tensor(layer, i).values,
                                                                 step_state.tensor(layer, i).values));
        }
      }
      INFO(dir.filename().string() << " with " << choice.label << ": max |logit difference| " << worst_logits
                                   << ", max |state difference| " << worst_state);
      CHECK(worst_logits < 1e-4);
      CHECK(worst_state < 1e-4);
    }
  }
}
