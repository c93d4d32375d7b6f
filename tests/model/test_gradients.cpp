// Whole-model gradients of the mean next-token cross-entropy against PyTorch autograd
// (tests/data/models/*/grads.safetensors), every parameter, within 1e-4 of each tensor's
// largest gradient; and activation recomputation gives the same gradients.

#include <catch2/catch.hpp>
#include <cmath>

#include "fixtures.hpp"
#include "mambakit/model.hpp"
#include "mambakit/safetensors.hpp"

TEST_CASE("gradients match PyTorch autograd for every parameter of every fixture") {
  const auto& host = mambakit::test::in_tree_plugins();
  for (const auto& dir : mambakit::test::model_fixture_dirs()) {
    const auto expected = mambakit::SafetensorsFile::open(dir / "expected.safetensors");
    const auto reference = mambakit::SafetensorsFile::open(dir / "grads.safetensors");
    for (const auto& choice : mambakit::test::cpu_kernel_choices()) {
      mambakit::ModelOptions options;
      options.weights_dtype = mambakit::sdk::DType::kF32;  // gradients need f32 weights
      options.kernels = choice.kernels;
      auto model = mambakit::Model::load(dir, host, options);
      model.zero_gradients();
      const double loss = model.accumulate_gradients(mambakit::test::fixture_tokens(expected, 7));
      INFO(dir.filename().string() << " " << choice.label);
      CHECK(loss == Approx(reference.read_f32("loss")[0]).epsilon(1e-5));
      for (const auto& parameter : model.parameters()) {
        const auto* stored = reference.find(parameter.name);
        if (stored == nullptr && parameter.name == "backbone.embeddings.weight") {
          stored = reference.find("backbone.embedding.weight");
        }
        REQUIRE(stored != nullptr);
        const auto wanted = reference.read_f32(stored->name);
        const auto got = model.gradient_values(parameter.name);
        double scale = 0.0;
        for (float v : wanted) scale = std::max(scale, static_cast<double>(std::abs(v)));
        const double error = mambakit::test::max_abs_difference(got, wanted);
        INFO(parameter.name << ": max error " << error << " of largest gradient " << scale);
        CHECK(error <= 1e-4 * scale + 1e-7);
      }
    }
  }
}

TEST_CASE("activation recomputation gives the same gradients with less activation memory") {
  const auto dir = mambakit::test::data_dir() / "models" / "tiny_untied_bias";
  const auto expected = mambakit::SafetensorsFile::open(dir / "expected.safetensors");
  auto model = mambakit::Model::load(dir, mambakit::test::in_tree_plugins());
  model.zero_gradients();
  const double loss = model.accumulate_gradients(mambakit::test::fixture_tokens(expected, 7), {}, false);
  const auto stored_bytes = model.last_activation_bytes();
  std::vector<std::vector<float>> plain;
  for (const auto& p : model.parameters()) plain.push_back(model.gradient_values(p.name));
  model.zero_gradients();
  CHECK(model.accumulate_gradients(mambakit::test::fixture_tokens(expected, 7), {}, true) == loss);
  CHECK(model.last_activation_bytes() < stored_bytes);
  const auto parameters = model.parameters();
  for (std::size_t i = 0; i < parameters.size(); ++i) CHECK(model.gradient_values(parameters[i].name) == plain[i]);
}
