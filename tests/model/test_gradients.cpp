// Whole-model gradients of the mean next-token cross-entropy against PyTorch autograd
// (tests/data/models/*/grads.safetensors), every parameter, within 1e-4 of each tensor's
// largest gradient; and activation recomputation gives the same gradients.

#include <catch2/catch.hpp>
#include <algorithm>
#include <cmath>
#include <random>

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

TEST_CASE("a Mamba-2 batch longer than the forward's blocks gets the gradient of its loss") {
  // 600 tokens: mixer/mamba2's training forward runs blocks of 512 and 88 tokens into the saved
  // tensors. The gradient along a random direction of each layer-0 mixer parameter against
  // central differences of the loss (evaluate_loss, the inference forward).
  const auto dir = mambakit::test::data_dir() / "models" / "mamba2_hf_groups";
  mambakit::ModelOptions options;
  options.weights_dtype = mambakit::sdk::DType::kF32;
  auto model = mambakit::Model::load(dir, mambakit::test::in_tree_plugins(), options);
  mambakit::TokenBatch tokens{1, 600, {}};
  for (std::int64_t i = 0; i < 600; ++i) tokens.ids.push_back((i * 7919 + 13) % model.config().vocab_size);
  model.zero_gradients();
  const double loss = model.accumulate_gradients(tokens);
  CHECK(model.evaluate_loss(tokens) == Approx(loss).epsilon(1e-6));
  std::mt19937 generator(3);
  std::normal_distribution<float> normal;
  for (auto& slice : model.parameter_slices()) {
    if (slice.name.rfind("backbone.layers.0.mixer.", 0) != 0) continue;
    std::vector<float> direction(static_cast<std::size_t>(slice.numel)), saved(slice.values, slice.values + slice.numel);
    double norm = 0.0, analytic = 0.0;
    for (auto& v : direction) {
      v = normal(generator);
      norm += static_cast<double>(v) * v;
    }
    for (std::int64_t i = 0; i < slice.numel; ++i) {
      direction[i] = static_cast<float>(direction[i] / std::sqrt(norm));
      analytic += static_cast<double>(direction[i]) * slice.gradients[i];
    }
    const float step = 1e-2f;
    auto loss_at = [&](float sign) {
      for (std::int64_t i = 0; i < slice.numel; ++i) slice.values[i] = saved[i] + sign * step * direction[i];
      model.parameters_changed();
      return model.evaluate_loss(tokens);
    };
    const double numeric = (loss_at(1.0f) - loss_at(-1.0f)) / (2.0 * step);
    std::copy(saved.begin(), saved.end(), slice.values);
    model.parameters_changed();
    INFO(slice.name << ": analytic " << analytic << ", central difference " << numeric);
    CHECK(std::abs(analytic - numeric) <= 5e-3 * std::abs(numeric) + 2e-5);
  }
}
