// Weights held in 16 bits (ModelOptions::weights_dtype, `--dtype`): a model holding f16 or bf16
// weights computes what an f32 model computes with the same weights rounded to that type,
// through the prefill (weights widened per call) and the decode step (weights read in 16 bits
// by the few-rows kernel). The reference model is built independently: the rounded weights are
// written as an f32 checkpoint and loaded by the f32 path.

#include <catch2/catch.hpp>

#include <filesystem>
#include <string>
#include <vector>

#include "fixtures.hpp"
#include "mambakit/error.hpp"
#include "mambakit/half.hpp"
#include "mambakit/model.hpp"
#include "mambakit/safetensors.hpp"

namespace fs = std::filesystem;
namespace sdk = mambakit::sdk;
using Catch::Matchers::Contains;

namespace {

mambakit::Model load(const fs::path& dir, sdk::DType dtype) {
  mambakit::ModelOptions options;
  options.weights_dtype = dtype;
  options.n_threads = 2;
  return mambakit::Model::load(dir, mambakit::test::in_tree_plugins(), options);
}

/// `value` rounded to `dtype` and back, by the scalar conversions (independent of the model).
float rounded(float value, sdk::DType dtype) {
  return dtype == sdk::DType::kBF16 ? mambakit::bf16_to_f32(mambakit::f32_to_bf16(value))
                                    : mambakit::f16_to_f32(mambakit::f32_to_f16(value));
}

/// An f32 model whose weights are those of `dir` rounded to `dtype`, except the norms (which a
/// model holding 16-bit weights keeps in f32).
mambakit::Model rounded_reference(const fs::path& dir, sdk::DType dtype, const std::string& name) {
  auto model = load(dir, sdk::DType::kF32);
  std::vector<std::vector<float>> values;
  std::vector<mambakit::SafetensorsTensor> tensors;
  const auto parameters = model.parameters();
  values.reserve(parameters.size());
  for (const auto& parameter : parameters) {
    values.push_back(model.parameter_values(parameter.name));
    const bool norm = parameter.name.find("norm") != std::string::npos;
    if (!norm) {
      for (auto& v : values.back()) v = rounded(v, dtype);
    }
    tensors.push_back({parameter.name, sdk::DType::kF32, parameter.shape, values.back().data()});
  }
  const fs::path file = fs::path(MAMBAKIT_TEST_BINARY_DIR) / (name + ".rounded.safetensors");
  mambakit::write_safetensors(file, tensors, {});
  model.load_weights(file);
  return model;
}

double max_difference(const mambakit::FloatTensor& a, const mambakit::FloatTensor& b) {
  REQUIRE(a.values.size() == b.values.size());
  return mambakit::test::max_abs_difference(a.values, b.values);
}

}  // namespace

TEST_CASE("16-bit weights compute what f32 weights rounded to 16 bits compute, in prefill and decode") {
  for (const char* fixture : {"tiny_tied", "tiny_untied_bias"}) {
    const fs::path dir = mambakit::test::data_dir() / "models" / fixture;
    for (const sdk::DType dtype : {sdk::DType::kF16, sdk::DType::kBF16}) {
      INFO(fixture << " held as " << sdk::dtype_name(dtype));
      auto held = load(dir, dtype);
      auto reference = rounded_reference(dir, dtype, std::string(fixture) + sdk::dtype_name(dtype));
      CHECK(held.weights_dtype() == dtype);
      CHECK(held.parameter_bytes() < reference.parameter_bytes() * 6 / 10);

      const auto tokens = mambakit::test::two_row_prompt(held.config().vocab_size);
      CHECK(max_difference(held.forward(tokens), reference.forward(tokens)) <= 1e-5);

      // Prefill 5 tokens, then 4 steps through the decode path.
      auto held_state = held.make_state(2), reference_state = reference.make_state(2);
      mambakit::TokenBatch head{2, 5, {}};
      for (std::int64_t b = 0; b < 2; ++b) {
        for (int t = 0; t < 5; ++t) head.ids.push_back(tokens.ids[static_cast<std::size_t>(b * 9 + t)]);
      }
      CHECK(max_difference(held.forward(head, &held_state, true), reference.forward(head, &reference_state, true)) <=
            1e-5);
      for (int t = 5; t < 9; ++t) {
        const std::vector<std::int32_t> ids = {tokens.ids[static_cast<std::size_t>(t)],
                                               tokens.ids[static_cast<std::size_t>(9 + t)]};
        CHECK(max_difference(held.step(ids, held_state), reference.step(ids, reference_state)) <= 1e-5);
      }
    }
  }
}

TEST_CASE("weights are held as stored unless converted, and training refuses 16-bit weights") {
  const auto& host = mambakit::test::in_tree_plugins();
  // Fixtures stored in f16 and bf16 are held so by default; an f32 one stays f32.
  CHECK(mambakit::Model::load(mambakit::test::data_dir() / "models" / "tiny_tied", host).weights_dtype() ==
        sdk::DType::kF32);
  for (const auto& dir : mambakit::test::model_fixture_dirs()) {
    const auto file = mambakit::SafetensorsFile::open(dir / "model.safetensors");
    const sdk::DType stored = file.entries().front().dtype;
    auto model = mambakit::Model::load(dir, host);
    INFO(dir.filename().string());
    CHECK(model.weights_dtype() == stored);
  }
  auto model = load(mambakit::test::data_dir() / "models" / "tiny_tied", sdk::DType::kBF16);
  // Loading weights into a model that holds bf16 rounds them the same way as the conversion.
  const auto embedding = model.parameter_values("backbone.embeddings.weight");
  model.load_weights(mambakit::test::data_dir() / "models" / "tiny_tied" / "model.safetensors");
  CHECK(model.weights_dtype() == sdk::DType::kBF16);
  CHECK(model.parameter_values("backbone.embeddings.weight") == embedding);
  mambakit::TokenBatch tokens{1, 4, {1, 2, 3, 4}};
  CHECK_THROWS_WITH(model.accumulate_gradients(tokens), Contains("training needs f32 weights") && Contains("bf16"));
  // Saving converts back: a bf16-held model saved as f32 reloads with the same (rounded) values.
  const fs::path saved = fs::path(MAMBAKIT_TEST_BINARY_DIR) / "bf16_saved";
  model.save(saved, sdk::DType::kF32);
  auto reloaded = mambakit::Model::load(saved, host);
  CHECK(reloaded.weights_dtype() == sdk::DType::kF32);
  CHECK(reloaded.parameter_values("backbone.embeddings.weight") == model.parameter_values("backbone.embeddings.weight"));
}
