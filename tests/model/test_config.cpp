// Model configs: the native format's JSON round trip, the config adapters of mixer/s6 (a Hugging
// Face config.json, mambakit's first format), and errors that name the source, the layer, the
// component and the key.

#include <catch2/catch.hpp>
#include <algorithm>
#include <functional>
#include <nlohmann/json.hpp>

#include "fixtures.hpp"
#include "mambakit/config.hpp"
#include "mambakit/error.hpp"
#include "mambakit/model.hpp"

using Catch::Matchers::Contains;

namespace {

const mambakit::PluginHost& host() { return mambakit::test::in_tree_plugins(); }

mambakit::ModelConfig parse(const std::string& json, const std::string& source = "run.json") {
  return mambakit::parse_model_config(json, source, host());
}

std::string error_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const mambakit::Error& error) {
    return error.what();
  }
  return "no error";
}

std::string parse_error(const std::string& json) {
  return error_of([&] { parse(json); });
}

/// The error of creating a model from `json` (parsed without error first).
std::string create_error(const std::string& json) {
  return error_of([&] { mambakit::Model::create(parse(json), host()); });
}

}  // namespace

TEST_CASE("native configs survive a JSON round trip, with per-layer mixers and any head") {
  mambakit::ModelConfig lm;
  lm.d_model = 64;
  lm.n_layer = 3;
  lm.tie_embeddings = false;
  lm.mixer = {"s6", R"({"d_state":8})"};
  lm.layer_mixers[1] = {"ema", R"({"chunk":128})"};
  lm.head = {"lm", "{}"};
  mambakit::ModelConfig classification = lm;
  classification.head = {"classification", R"({"labels":["negative","neutral","positive"],"num_labels":3,"pooling":"max"})"};
  mambakit::ModelConfig features = lm;
  features.head = {"features", R"({"pooling":"none"})"};
  for (const auto& config : {lm, classification, features}) {
    const std::string text = mambakit::to_json(config);
    CHECK_THAT(text, Contains(R"("format": "mambakit-2")"));
    const auto parsed = parse(text, "round trip");
    CHECK(mambakit::to_json(parsed) == text);
    CHECK(parsed.head == config.head);
  }
  const auto parsed = parse(mambakit::to_json(lm));
  CHECK(parsed.mixer_of_layer(0) == lm.mixer);
  CHECK(parsed.mixer_of_layer(1) == lm.layer_mixers.at(1));
  CHECK(parsed.mixer_of_layer(2) == lm.mixer);
  CHECK_FALSE(parsed.tie_embeddings);
  CHECK(parsed.norm == mambakit::NormKind::kRms);
  CHECK(parsed.mlp.name.empty());
}

TEST_CASE("a native config's LayerNorm blocks and MLP sub-blocks survive a round trip and make those parameters") {
  mambakit::ModelConfig config;
  config.d_model = 16;
  config.n_layer = 2;
  config.vocab_size = 32;
  config.norm = mambakit::NormKind::kLayer;
  config.mixer = {"s6", R"({"d_state":4})"};
  config.mlp = {"gated_mlp", R"({"d_intermediate":24,"multiple_of":8})"};
  config.head = {"lm", "{}"};
  const std::string text = mambakit::to_json(config);
  CHECK_THAT(text, Contains(R"("norm": "layer")") && Contains(R"("mlp": {)"));
  const auto parsed = parse(text, "round trip");
  CHECK(mambakit::to_json(parsed) == text);
  CHECK(parsed.norm == mambakit::NormKind::kLayer);
  CHECK(parsed.mlp == config.mlp);
  // Layer i: norm (weight, bias), mixer, norm2, mlp; then norm_f with a bias.
  const auto model = mambakit::Model::create(parsed, host());
  std::vector<std::string> names;
  for (const auto& parameter : model.parameters()) names.push_back(parameter.name);
  for (const char* name : {"backbone.layers.1.norm.weight", "backbone.layers.1.norm.bias", "backbone.layers.1.norm2.weight",
                           "backbone.layers.1.norm2.bias", "backbone.layers.1.mlp.fc1.weight",
                           "backbone.layers.1.mlp.fc2.weight", "backbone.norm_f.weight", "backbone.norm_f.bias"}) {
    INFO(name);
    CHECK(std::find(names.begin(), names.end(), name) != names.end());
  }
  CHECK_THAT(parse_error(R"({"format": "mambakit-2", "norm": "batch", "mixer": "s6", "head": "lm"})"),
             Contains("norm = \"batch\""));
  // An MLP slot takes a stateless component: a mixer with a state is refused, naming it.
  CHECK_THAT(create_error(R"({"format": "mambakit-2", "n_layer": 1, "d_model": 16, "vocab_size": 32, "mixer": "s6",
                              "mlp": "s6", "head": "lm"})"),
             Contains("layer 0 mlp/s6") && Contains("must declare none"));
}

TEST_CASE("a Hugging Face config.json of model_type mamba is read by mixer/s6's adapter") {
  const auto config = mambakit::load_model_config(mambakit::test::data_dir() / "models/tiny_untied_bias/config.json", host());
  const auto& lm = config;
  CHECK(lm.head.name == "lm");
  CHECK(lm.d_model == 24);
  CHECK(lm.n_layer == 3);
  CHECK(lm.mixer.name == "s6");
  const auto options = nlohmann::json::parse(lm.mixer.options);
  CHECK(options.at("d_state") == 8);
  CHECK(options.at("dt_rank") == "auto");
  CHECK(options.at("bias") == true);
  CHECK_FALSE(lm.tie_embeddings);
  CHECK(lm.padded_vocab_size() == lm.vocab_size);

  const std::string mamba_130m = R"({"model_type": "mamba", "vocab_size": 50280, "hidden_size": 768,
    "state_size": 16, "num_hidden_layers": 24, "layer_norm_epsilon": 1e-5, "expand": 2, "conv_kernel": 4,
    "use_bias": false, "use_conv_bias": true, "time_step_rank": 48, "residual_in_fp32": true,
    "intermediate_size": 1536, "bos_token_id": 0, "eos_token_id": 0, "pad_token_id": 0, "torch_dtype": "float32",
    "dtype": "float32", "use_mambapy": false, "initializer_range": 0.1, "rescale_prenorm_residual": false})";
  const auto big = parse(mamba_130m, "130m");
  CHECK(nlohmann::json::parse(big.mixer.options).at("dt_rank") == 48);
  CHECK(big.tie_embeddings);
  CHECK(big.n_layer == 24);
}

TEST_CASE("mambakit's first format (Mamba-1 keys at the top level) reads as before") {
  const auto lm = parse(R"({"d_model": 32, "n_layer": 3, "d_state": 4, "dt_rank": 2,
      "mixer": ["s6", "ema", "s6"], "mixer_options": {"shared": 1}, "tie_embeddings": false})");
  CHECK(lm.head.name == "lm");
  CHECK(lm.n_layer == 3);
  CHECK_FALSE(lm.tie_embeddings);
  // The Mamba-1 keys go to the s6 layers; mixer_options goes to the other layers (and of it, an
  // s6 layer takes what it knows).
  CHECK(lm.mixer_of_layer(0).name == "s6");
  CHECK(nlohmann::json::parse(lm.mixer_of_layer(0).options) == nlohmann::json::parse(R"({"d_state": 4, "dt_rank": 2})"));
  CHECK(lm.mixer_of_layer(1).name == "ema");
  CHECK(nlohmann::json::parse(lm.mixer_of_layer(1).options) == nlohmann::json::parse(R"({"shared": 1})"));
  // In a stack of several mixers, mixer/s6 layers take only the shared options they know.
  const auto mixed = parse(R"({"n_layer": 2, "mixer": ["s6", "ema"], "mixer_options": {"decay": 0.8, "d_state": 8}})");
  CHECK(nlohmann::json::parse(mixed.mixer_of_layer(0).options) == nlohmann::json::parse(R"({"d_state": 8})"));
  CHECK(nlohmann::json::parse(mixed.mixer_of_layer(1).options) == nlohmann::json::parse(R"({"decay": 0.8})"));
  // In a pure Mamba-1 stack they all go to mixer/s6, which refuses one it does not know.
  CHECK_THAT(create_error(R"({"d_model": 16, "n_layer": 1, "mixer_options": {"decay": 0.8}})"),
             Contains("mixer/s6") && Contains("unknown option \"decay\""));
  // The bundled model's config is in this format.
  const auto bundled = mambakit::load_model_config(mambakit::test::data_dir() / "../../models/default/config.json", host());
  CHECK(bundled.d_model == 256);
  // Its tasks are heads with the task's keys as their options.
  const auto classifier = parse(R"({"task": "sequence_classification", "num_labels": 3, "pooling": "max",
      "labels": ["a", "b", "c"], "dropout": 0.1})");
  CHECK(classifier.head.name == "classification");
  CHECK(nlohmann::json::parse(classifier.head.options) ==
        nlohmann::json::parse(R"({"num_labels": 3, "pooling": "max", "labels": ["a", "b", "c"], "dropout": 0.1})"));
  CHECK(parse(R"({"task": "feature_extraction", "pooling": "none"})").head ==
        mambakit::ComponentChoice{"features", R"({"pooling":"none"})"});
}

TEST_CASE("backward-compatible names exist") {
  mambakit::MambaConfig config;
  CHECK(config.d_model == 768);
  static_assert(std::is_same_v<mambakit::MambaConfig, mambakit::ModelConfig>);
}

TEST_CASE("invalid configs are errors naming the source, key and value") {
  CHECK_THAT(parse_error(R"({"format": "mambakit-2", "d_model": "wide", "mixer": "s6", "head": "lm"})"),
             Contains("run.json") && Contains("d_model = \"wide\"") && Contains("integer"));
  CHECK_THAT(parse_error(R"({"format": "mambakit-2", "n_layer": 2, "head": "lm"})"), Contains("\"mixer\" is missing"));
  CHECK_THAT(parse_error(R"({"format": "mambakit-2", "n_layer": 2, "mixer": "s6"})"), Contains("\"head\" is missing"));
  CHECK_THAT(parse_error(R"({"format": "mambakit-2", "mixer": {"name": "s6", "opts": {}}, "head": "lm"})"),
             Contains("unknown key \"opts\""));
  // Values are checked once, when a model is made from the config, naming the config's file.
  CHECK_THAT(create_error(R"({"format": "mambakit-2", "n_layer": 2, "mixer": "s6", "head": "lm", "layers": {"5": "s6"}})"),
             Contains("run.json") && Contains("layers.5"));
  CHECK_THAT(create_error(R"({"format": "mambakit-2", "n_layer": 0, "mixer": "s6", "head": "lm"})"),
             Contains("run.json") && Contains("n_layer = 0"));
  CHECK_THAT(parse_error(R"({"format": "mambakit-2", "mixer": "s6", "head": "lm", "task": "causal_lm"})"),
             Contains("unknown key \"task\""));
  CHECK_THAT(parse_error(R"({"format": "mambakit-3"})"), Contains("format = \"mambakit-3\""));
  CHECK_THAT(parse_error(R"({"n_layer": 2, "mixer": ["s6", "s6", "s6"]})"), Contains("3 names"));
  CHECK_THAT(parse_error(R"({"dstate": 16})"), Contains("unknown key \"dstate\""));
  CHECK_THAT(parse_error(R"({"task": "translation"})"), Contains("task = \"translation\""));
  CHECK_THAT(parse_error(R"({"task": "causal_lm", "pooling": "mean"})"), Contains("unknown key \"pooling\""));
  CHECK_THAT(parse_error(R"({"model_type": "llama"})"), Contains("model_type = \"llama\" is not supported"));
  CHECK_THAT(parse_error(R"({"model_type": "mamba", "hidden_size": 64, "expand": 2, "intermediate_size": 100})"),
             Contains("intermediate_size = 100"));
  CHECK_THAT(parse_error(R"({"model_type": "mamba", "hidden_act": "gelu"})"), Contains("hidden_act = \"gelu\""));
  CHECK_THAT(parse_error(R"({"model_type": "mamba", "state_sise": 16})"), Contains("unknown key \"state_sise\""));
  CHECK_THAT(parse_error("[1, 2]"), Contains("run.json: not a JSON object"));
  CHECK_THAT(parse_error("{broken"), Contains("not valid JSON"));
  CHECK_THROWS_WITH(mambakit::load_model_config("/nonexistent/config.json", host()),
                    Contains("/nonexistent/config.json") && Contains("cannot open"));
}

TEST_CASE("a mixer's and a head's options are validated by the component, naming it and the key") {
  CHECK_THAT(create_error(R"({"task": "sequence_classification", "pooling": "none"})"),
             Contains("head/classification") && Contains("\"pooling\" = \"none\""));
  CHECK_THAT(create_error(R"({"task": "sequence_classification", "num_labels": 0})"),
             Contains("head/classification") && Contains("\"num_labels\" = 0"));
  CHECK_THAT(create_error(R"({"task": "feature_extraction", "pooling": "median"})"),
             Contains("head/features") && Contains("\"pooling\" = \"median\""));
  CHECK_THAT(create_error(R"({"format": "mambakit-2", "d_model": 16, "n_layer": 1, "mixer": "s6",
      "head": {"name": "lm", "options": {"vocab_size": 8}}})"),
             Contains("head/lm") && Contains("\"vocab_size\" is the backbone's"));
  CHECK_THAT(create_error(R"({"format": "mambakit-2", "d_model": 16, "n_layer": 1, "mixer": "s6",
      "head": {"name": "lm", "options": {"temperature": 2}}})"),
             Contains("head/lm") && Contains("unknown option \"temperature\""));
  CHECK_THAT(create_error(R"({"d_model": 16, "n_layer": 2, "d_state": 0})"),
             Contains("layer 0") && Contains("mixer/s6") && Contains("d_state"));
  CHECK_THAT(create_error(R"({"d_model": 16, "n_layer": 2, "dt_rank": -3})"), Contains("dt_rank") && Contains("-3"));
  CHECK_THAT(create_error(R"({"d_model": 16, "n_layer": 2, "dt_min": 0.5, "dt_max": 0.1})"),
             Contains("dt_max") && Contains("0.1"));
  CHECK_THAT(create_error(R"({"d_model": 16, "n_layer": 2, "dt_init": "zeros"})"), Contains("dt_init") && Contains("zeros"));
  CHECK_THAT(create_error(R"({"format": "mambakit-2", "d_model": 16, "n_layer": 3, "mixer": "s6",
      "head": "lm", "layers": {"2": {"name": "s6", "options": {"d_stat": 4}}}})"),
             Contains("layer 2") && Contains("mixer/s6") && Contains("unknown option \"d_stat\""));
  CHECK_THAT(create_error(R"({"format": "mambakit-2", "d_model": 16, "n_layer": 1, "head": "lm",
      "mixer": {"name": "s6", "options": {"d_model": 8}}})"),
             Contains("layer 0") && Contains("\"d_model\" is the backbone's"));
}
