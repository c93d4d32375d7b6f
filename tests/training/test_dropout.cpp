// The classification config's dropout: applied in training only, to the hidden states the head
// sees, with a mask fixed by TrainingTargets::dropout_seed. Checked: the same seed repeats the
// loss and gradients exactly, another seed changes them, evaluation has no dropout, and the
// gradient is that of the masked loss (central finite differences of the loss with the mask
// fixed, for the classifier and the final norm).

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <string>

#include "fixtures.hpp"
#include "mambakit/config.hpp"
#include "mambakit/model.hpp"

namespace {

mambakit::Model classifier(double dropout) {
  const std::string json = R"({"task": "sequence_classification", "d_model": 16, "n_layer": 1, "d_state": 4,
                               "vocab_size": 40, "num_labels": 3, "pooling": "mean", "dropout": )" +
                           std::to_string(dropout) + "}";
  mambakit::ModelOptions options;
  options.seed = 11;
  options.n_threads = 1;
  return mambakit::Model::create(mambakit::parse_model_config(json, "dropout test", mambakit::test::in_tree_plugins()), mambakit::test::in_tree_plugins(),
                                 options);
}

mambakit::TokenBatch tokens() {
  mambakit::TokenBatch batch;
  batch.batch = 3;
  batch.length = 6;
  for (int i = 0; i < 18; ++i) batch.ids.push_back((i * 7 + 3) % 40);
  return batch;
}

mambakit::TrainingTargets targets(std::uint64_t seed) {
  mambakit::TrainingTargets result;
  result.labels = {0, 2, 1};
  result.dropout_seed = seed;
  return result;
}

/// The loss and the gradient of parameter `name` for one batch.
std::pair<double, std::vector<float>> loss_and_gradient(mambakit::Model& model, std::uint64_t seed,
                                                        const std::string& name) {
  model.zero_gradients();
  const double loss = model.accumulate_gradients(tokens(), targets(seed));
  return {loss, model.gradient_values(name)};
}

}  // namespace

TEST_CASE("classification dropout is seeded, training-only, and differentiated with its mask") {
  auto plain = classifier(0.0);
  auto dropped = classifier(0.5);
  const std::string weight = "classifier.weight";

  // Same parameters (same init seed); without dropout the training loss is the evaluation loss.
  REQUIRE(plain.parameter_values(weight) == dropped.parameter_values(weight));
  const double evaluation = plain.evaluate_loss(tokens(), targets(0));
  CHECK(loss_and_gradient(plain, 1, weight).first == evaluation);
  // Evaluation never drops.
  CHECK(dropped.evaluate_loss(tokens(), targets(1)) == evaluation);

  const auto [loss_a, grad_a] = loss_and_gradient(dropped, 1, weight);
  const auto [loss_again, grad_again] = loss_and_gradient(dropped, 1, weight);
  const auto [loss_b, grad_b] = loss_and_gradient(dropped, 2, weight);
  CHECK(loss_a == loss_again);
  CHECK(grad_a == grad_again);
  CHECK(loss_a != evaluation);
  CHECK(loss_b != loss_a);
  CHECK(grad_b != grad_a);

  // d(masked loss)/d(parameter) against central differences with the mask fixed (seed 1).
  for (const char* name_text : {"classifier.weight", "backbone.norm_f.weight"}) {
    const std::string name = name_text;
    const auto analytic = loss_and_gradient(dropped, 1, name).second;
    double largest = 0.0, error = 0.0;
    for (const auto& slice : dropped.parameter_slices()) {
      if (slice.name != name) continue;
      for (std::int64_t i = 0; i < slice.numel; ++i) {
        const float original = slice.values[i];
        const float h = 1e-2f;
        slice.values[i] = original + h;
        const double plus = loss_and_gradient(dropped, 1, name).first;
        slice.values[i] = original - h;
        const double minus = loss_and_gradient(dropped, 1, name).first;
        slice.values[i] = original;
        const double numeric = (plus - minus) / (2.0 * h);
        largest = std::max(largest, std::fabs(numeric));
        error = std::max(error, std::fabs(numeric - analytic[static_cast<std::size_t>(i)]));
      }
    }
    INFO(name << ": max error " << error << ", max |gradient| " << largest);
    CHECK(largest > 0.0);
    // f32 loss differences with h = 1e-2: about 1e-5 of noise; an unmasked backward is off by
    // the order of the gradient itself.
    CHECK(error <= 2e-3 * largest + 1e-5);
  }
}
