// Task models assembled from config: classification and feature extraction heads on the
// same backbone, hybrid per-layer mixer lists, and errors for missing components.

#include <catch2/catch.hpp>
#include <cmath>

#include "fixtures.hpp"
#include "mambakit/error.hpp"
#include "mambakit/model.hpp"

using Catch::Matchers::Contains;

namespace {

mambakit::ModelConfig small_config(const std::string& head = "lm", const std::string& head_options = "{}") {
  mambakit::ModelConfig config;
  config.d_model = 16;
  config.n_layer = 2;
  config.mixer = {"s6", R"({"d_state": 4})"};
  config.head = {head, head_options};
  config.vocab_size = 30;
  return config;
}

mambakit::TokenBatch two_rows() { return {2, 5, {1, 2, 3, 4, 5, 9, 8, 7, 6, 5}}; }

}  // namespace

TEST_CASE("feature extraction returns per-token hidden states, and pooled ones consistent with them") {
  const auto& host = mambakit::test::in_tree_plugins();
  auto model = mambakit::Model::create(small_config("features", R"({"pooling": "none"})"), host, {{}, 1, 7, {}});
  const auto hidden = model.forward(two_rows());
  REQUIRE(hidden.shape == std::vector<std::int64_t>{2, 5, 16});

  for (const std::string pooling : {"last", "mean", "max"}) {
    auto pooled_model =
        mambakit::Model::create(small_config("features", R"({"pooling": ")" + pooling + "\"}"), host, {{}, 1, 7, {}});
    const auto pooled = pooled_model.forward(two_rows());
    REQUIRE(pooled.shape == std::vector<std::int64_t>{2, 16});
    for (int b = 0; b < 2; ++b) {
      for (int d = 0; d < 16; ++d) {
        double expected = pooling == "max" ? -INFINITY : 0.0;
        for (int t = 0; t < 5; ++t) {
          const double v = hidden.values[(b * 5 + t) * 16 + d];
          if (pooling == "last" && t == 4) expected = v;
          if (pooling == "mean") expected += v / 5;
          if (pooling == "max") expected = std::max(expected, v);
        }
        CHECK(pooled.values[b * 16 + d] == Approx(expected).margin(1e-6));
      }
    }
  }
}

TEST_CASE("sequence classification gives one score per label and row") {
  auto model = mambakit::Model::create(small_config("classification", R"({"num_labels": 3})"),
                                       mambakit::test::in_tree_plugins(), {{}, 1, 3, {}});
  const auto scores = model.forward(two_rows());
  CHECK(scores.shape == std::vector<std::int64_t>{2, 3});
  CHECK(scores.values[0] != scores.values[3]);
}

TEST_CASE("a per-layer mixer list assembles each layer with its own mixer") {
  auto config = small_config();
  config.layer_mixers[1] = {"missing_mixer", "{}"};
  CHECK_THROWS_WITH(mambakit::Model::create(config, mambakit::test::in_tree_plugins()),
                    Contains("unknown mixer 'missing_mixer'") && Contains("s6"));
}

TEST_CASE("a model's parameters are the Hugging Face names, tied heads sharing the embedding") {
  auto config = small_config();
  auto tied = mambakit::Model::create(config, mambakit::test::in_tree_plugins());
  config.tie_embeddings = false;
  auto untied = mambakit::Model::create(config, mambakit::test::in_tree_plugins());
  const std::int64_t head = 32 * 16;  // padded vocabulary (30 -> 32) x d_model
  CHECK(untied.parameter_count() - tied.parameter_count() == head);
  bool has_a_log = false;
  for (const auto& p : tied.parameters()) has_a_log |= p.name == "backbone.layers.1.mixer.A_log" && !p.weight_decay;
  CHECK(has_a_log);
  const auto a_log = tied.parameter_values("backbone.layers.0.mixer.A_log");
  CHECK(a_log[3] == Approx(std::log(4.0)));
}

TEST_CASE("a trained LM's backbone takes a new head: classifier or feature extractor") {
  const auto& host = mambakit::test::in_tree_plugins();
  auto lm = mambakit::Model::create(small_config(), host, {{}, 1, 3, {}});
  CHECK(lm.objective() == mambakit::sdk::HeadObjective::kNextToken);
  auto classifier = lm.with_head(host, {"classification", R"({"num_labels": 2, "labels": ["no", "yes"]})"}, 9);
  CHECK(classifier.objective() == mambakit::sdk::HeadObjective::kClassLabels);
  CHECK(classifier.class_names() == std::vector<std::string>{"no", "yes"});
  for (const auto& parameter : lm.parameters()) {
    CHECK(classifier.parameter_values(parameter.name) == lm.parameter_values(parameter.name));
  }
  CHECK(classifier.parameter_count() == lm.parameter_count() + 2 * 16 + 2);
  // The features head on the same backbone returns the final norm's output, which the LM head
  // projects: features (B, L, D) times the tied embedding gives the LM's logits.
  auto features = lm.with_head(host, {"features", R"({"pooling": "none"})"}, 9);
  CHECK(features.objective() == mambakit::sdk::HeadObjective::kNone);
  const auto hidden = features.forward(two_rows()), logits = lm.forward(two_rows());
  const auto embedding = lm.parameter_values("backbone.embeddings.weight");
  for (int row = 0; row < 10; row += 3) {
    for (int v = 0; v < 30; v += 7) {
      double dot = 0.0;
      for (int d = 0; d < 16; ++d) dot += double(hidden.values[row * 16 + d]) * embedding[v * 16 + d];
      CHECK(logits.values[row * 32 + v] == Approx(dot).margin(1e-5));
    }
  }
  CHECK_THROWS_WITH(features.accumulate_gradients(two_rows()), Contains("head/features declares no training objective"));
}

TEST_CASE("token ids outside the vocabulary are errors naming the position") {
  auto model = mambakit::Model::create(small_config(), mambakit::test::in_tree_plugins());
  mambakit::TokenBatch bad{1, 3, {1, 31, 2}};
  CHECK_THROWS_WITH(model.forward(bad), Contains("token id 31 at row 0, position 1") && Contains("[0, 30)"));
  CHECK_THROWS_WITH(model.forward({0, 0, {}}), Contains("empty"));
}
