// Config types: defaults, JSON round trip, Hugging Face config.json, and validation errors
// that name the key and the value.

#include <catch2/catch.hpp>

#include "fixtures.hpp"
#include "mambakit/config.hpp"
#include "mambakit/error.hpp"

using Catch::Matchers::Contains;

TEST_CASE("configs survive a JSON round trip for every task") {
  mambakit::LmConfig lm;
  lm.d_model = 64;
  lm.n_layer = 3;
  lm.dt_rank = 0;
  lm.tie_embeddings = false;
  lm.mixers = {"s6", "ema", "s6"};
  lm.mixer_options = R"({"chunk":128})";
  mambakit::ClassificationConfig classification;
  classification.num_labels = 3;
  classification.pooling = mambakit::Pooling::kMax;
  classification.labels = {"negative", "neutral", "positive"};
  mambakit::FeatureExtractionConfig features;
  features.pooling = mambakit::Pooling::kNone;
  for (const mambakit::ModelConfig& config :
       {mambakit::ModelConfig(lm), mambakit::ModelConfig(classification), mambakit::ModelConfig(features)}) {
    const std::string text = mambakit::to_json(config);
    const auto parsed = mambakit::parse_model_config(text, "round trip");
    CHECK(mambakit::to_json(parsed) == text);
    CHECK(parsed.index() == config.index());
  }
  const auto parsed = std::get<mambakit::LmConfig>(mambakit::parse_model_config(mambakit::to_json(lm), "lm"));
  CHECK(parsed.mixers == lm.mixers);
  CHECK(parsed.resolved_dt_rank() == 4);
  CHECK_FALSE(parsed.tie_embeddings);
}

TEST_CASE("a Hugging Face config.json of model_type mamba is read directly") {
  const auto config = mambakit::load_model_config(mambakit::test::data_dir() / "models/tiny_untied_bias/config.json");
  const auto& lm = std::get<mambakit::LmConfig>(config);
  CHECK(lm.d_model == 24);
  CHECK(lm.n_layer == 3);
  CHECK(lm.d_state == 8);
  CHECK(lm.resolved_dt_rank() == 2);
  CHECK(lm.bias);
  CHECK_FALSE(lm.tie_embeddings);
  CHECK(lm.padded_vocab_size() == lm.vocab_size);

  const std::string mamba_130m = R"({"model_type": "mamba", "vocab_size": 50280, "hidden_size": 768,
    "state_size": 16, "num_hidden_layers": 24, "layer_norm_epsilon": 1e-5, "expand": 2, "conv_kernel": 4,
    "use_bias": false, "use_conv_bias": true, "time_step_rank": 48, "residual_in_fp32": true,
    "intermediate_size": 1536, "bos_token_id": 0, "eos_token_id": 0, "pad_token_id": 0, "torch_dtype": "float32"})";
  const auto big = std::get<mambakit::LmConfig>(mambakit::parse_model_config(mamba_130m, "130m"));
  CHECK(big.d_inner() == 1536);
  CHECK(big.resolved_dt_rank() == 48);
  CHECK(big.tie_embeddings);
}

TEST_CASE("backward-compatible names exist") {
  mambakit::MambaConfig config;
  CHECK(config.d_model == 768);
  static_assert(std::is_same_v<mambakit::MambaConfig, mambakit::LmConfig>);
}

TEST_CASE("invalid configs are errors naming the source, key and value") {
  auto error_of = [](const std::string& json) {
    try {
      mambakit::parse_model_config(json, "run.json");
    } catch (const mambakit::Error& error) {
      return std::string(error.what());
    }
    return std::string("no error");
  };
  CHECK_THAT(error_of(R"({"d_state": 0})"), Contains("run.json") && Contains("d_state = 0"));
  CHECK_THAT(error_of(R"({"d_model": "wide"})"), Contains("d_model = \"wide\"") && Contains("integer"));
  CHECK_THAT(error_of(R"({"dt_rank": -3})"), Contains("dt_rank = -3"));
  CHECK_THAT(error_of(R"({"dt_min": 0.5, "dt_max": 0.1})"), Contains("dt_max = 0.1"));
  CHECK_THAT(error_of(R"({"dt_init": "zeros"})"), Contains("dt_init = zeros"));
  CHECK_THAT(error_of(R"({"n_layer": 2, "mixer": ["s6", "s6", "s6"]})"), Contains("mixer = 3 names"));
  CHECK_THAT(error_of(R"({"dstate": 16})"), Contains("unknown key \"dstate\""));
  CHECK_THAT(error_of(R"({"task": "translation"})"), Contains("task = \"translation\""));
  CHECK_THAT(error_of(R"({"task": "sequence_classification", "pooling": "none"})"), Contains("pooling = none"));
  CHECK_THAT(error_of(R"({"task": "sequence_classification", "num_labels": 0})"), Contains("num_labels = 0"));
  CHECK_THAT(error_of(R"({"task": "feature_extraction", "pooling": "median"})"), Contains("pooling = \"median\""));
  CHECK_THAT(error_of(R"({"model_type": "llama"})"), Contains("model_type = \"llama\""));
  CHECK_THAT(error_of(R"({"model_type": "mamba", "hidden_size": 64, "expand": 2, "intermediate_size": 100})"),
             Contains("intermediate_size = 100"));
  CHECK_THAT(error_of("[1, 2]"), Contains("run.json: not a JSON object"));
  CHECK_THAT(error_of("{broken"), Contains("not a JSON object"));
  CHECK_THROWS_WITH(mambakit::load_model_config("/nonexistent/config.json"),
                    Contains("/nonexistent/config.json") && Contains("cannot open"));
}
