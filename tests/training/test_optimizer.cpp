// AdamW and the learning-rate schedule against hand-derived values.

#include <catch2/catch.hpp>
#include <cmath>

#include "fixtures.hpp"
#include "mambakit/optimizer.hpp"

namespace {

mambakit::Model small_model() {
  mambakit::ModelConfig config;
  config.head = {"lm", "{}"};
  config.d_model = 8;
  config.n_layer = 1;
  config.mixer = {"s6", R"({"d_state": 2})"};
  config.vocab_size = 16;
  return mambakit::Model::create(config, mambakit::test::in_tree_plugins());
}

}  // namespace

TEST_CASE("the schedule warms up linearly, then follows a cosine to min_lr") {
  CHECK(mambakit::cosine_learning_rate(0, 10, 110, 1.0, 0.1) == Approx(0.1));
  CHECK(mambakit::cosine_learning_rate(9, 10, 110, 1.0, 0.1) == Approx(1.0));
  CHECK(mambakit::cosine_learning_rate(10, 10, 110, 1.0, 0.1) == Approx(1.0));
  CHECK(mambakit::cosine_learning_rate(60, 10, 110, 1.0, 0.1) == Approx(0.55));
  CHECK(mambakit::cosine_learning_rate(110, 10, 110, 1.0, 0.1) == Approx(0.1));
  CHECK(mambakit::cosine_learning_rate(500, 10, 110, 1.0, 0.1) == Approx(0.1));
}

TEST_CASE("one AdamW step moves each parameter by lr times the sign of its gradient, decaying only decayed ones") {
  auto model = small_model();
  auto slices = model.parameter_slices();
  std::vector<std::vector<float>> before;
  for (auto& slice : slices) {
    before.emplace_back(slice.values, slice.values + slice.numel);
    for (std::int64_t i = 0; i < slice.numel; ++i) slice.gradients[i] = (i % 2 == 0) ? 0.01f : -0.02f;
  }
  const double lr = 0.1, decay = 0.5;
  mambakit::AdamW optimizer(model, {0.9, 0.999, 1e-12, decay, 0.0});
  optimizer.step(lr);
  // First step: m/(1-b1) = g, v/(1-b2) = g^2, so the update is lr * sign(g) (eps negligible).
  for (std::size_t p = 0; p < slices.size(); ++p) {
    for (std::int64_t i = 0; i < slices[p].numel; ++i) {
      const double shrink = slices[p].weight_decay ? 1.0 - lr * decay : 1.0;
      const double expected = before[p][static_cast<std::size_t>(i)] * shrink - lr * (i % 2 == 0 ? 1.0 : -1.0);
      CHECK(slices[p].values[i] == Approx(expected).margin(1e-5));
    }
  }
}

TEST_CASE("clipping scales the gradient to the clip norm") {
  auto model = small_model();
  double sum_squares = 0;
  for (auto& slice : model.parameter_slices()) {
    for (std::int64_t i = 0; i < slice.numel; ++i) {
      slice.gradients[i] = 3.0f;
      sum_squares += 9.0;
    }
  }
  mambakit::AdamW optimizer(model, {0.9, 0.999, 1e-8, 0.0, 1.0});
  CHECK(optimizer.step(1e-3) == Approx(std::sqrt(sum_squares)));
}
