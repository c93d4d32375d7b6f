// config/mamba-ssm: state-spaces/mamba's config.json (MambaConfig) read into the native format.
// Checked field by field on the adapter's own output (the native JSON text), and end to end
// through parse_model_config (which adapter wins, what the host reads): the configs as
// state-spaces/mamba-130m and mamba2-130m ship them, the Mamba-2 fixture, hybrids with attention
// layers, an MLP, LayerNorm and ssm_cfg_per_layer; errors that name the key; and that the
// formats other adapters own stay theirs.

#include <catch2/catch.hpp>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "fixtures.hpp"
#include "mambakit/config.hpp"
#include "mambakit/error.hpp"
#include "mambakit/model.hpp"
#include "mambakit/plugin_host.hpp"

using Catch::Matchers::Contains;
using nlohmann::json;

namespace {

/// Collects what an adapter writes.
class StringSink final : public mambakit::sdk::TextSink {
 public:
  void append(const char* text, std::size_t size) noexcept override { text_.append(text, size); }
  [[nodiscard]] const std::string& text() const { return text_; }

 private:
  std::string text_;
};

const mambakit::PluginHost& host() { return mambakit::test::in_tree_plugins(); }

std::int32_t score(const std::string& adapter, const std::string& text) {
  return host().create_config_adapter(adapter)->score(text.c_str());
}

/// The adapter's native translation of `text`; fails the test when it refuses it.
json translate(const std::string& text) {
  StringSink sink;
  const mambakit::sdk::Status status = host().create_config_adapter("mamba-ssm")->translate(text.c_str(), &sink);
  INFO(status.message);
  REQUIRE(status.ok());
  return json::parse(sink.text());
}

/// The adapter's error message for `text` (empty when it translates it).
std::string translate_error(const std::string& text) {
  StringSink sink;
  const mambakit::sdk::Status status = host().create_config_adapter("mamba-ssm")->translate(text.c_str(), &sink);
  return status.ok() ? std::string() : std::string(status.message);
}

mambakit::ModelConfig parse(const std::string& text) {
  return mambakit::parse_model_config(text, "config.json", host());
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

/// state-spaces/mamba-130m's config.json as published.
constexpr const char* kMamba130m =
    R"({"d_model": 768, "n_layer": 24, "vocab_size": 50277, "ssm_cfg": {}, "rms_norm": true,
        "residual_in_fp32": true, "fused_add_norm": true, "pad_vocab_size_multiple": 8})";

/// state-spaces/mamba2-130m's config.json as published.
constexpr const char* kMamba2_130m =
    R"({"d_model": 768, "d_intermediate": 0, "n_layer": 24, "vocab_size": 50277, "ssm_cfg": {"layer": "Mamba2"},
        "attn_layer_idx": [], "attn_cfg": {}, "rms_norm": true, "residual_in_fp32": true, "fused_add_norm": true,
        "pad_vocab_size_multiple": 16, "tie_embeddings": true})";

/// A hybrid in the official layout: Mamba-2 layers, attention at 1 and 4, a Mamba-1 layer 2
/// (ssm_cfg_per_layer), a gated MLP in every block, LayerNorm, untied head.
std::string hybrid(const std::string& extra = "") {
  return R"({"d_model": 32, "d_intermediate": 40, "n_layer": 5, "vocab_size": 45,
    "ssm_cfg": {"layer": "Mamba2", "d_state": 8, "d_conv": 3, "headdim": 16, "ngroups": 2, "chunk_size": 8,
                "bias": true, "dt_limit": [0.001, 100.0]},
    "ssm_cfg_per_layer": {"2": {"layer": "Mamba1", "d_state": 4, "dt_rank": 3, "use_fast_path": false}},
    "attn_layer_idx": [4, 1],
    "attn_cfg": {"causal": true, "num_heads": 4, "num_heads_kv": 2, "head_dim": 8, "rotary_emb_dim": 4,
                 "softmax_scale": 0.5, "qkv_proj_bias": false},
    "rms_norm": false, "residual_in_fp32": true, "fused_add_norm": false, "pad_vocab_size_multiple": 8,
    "tie_embeddings": false)" +
         extra + "}";
}

}  // namespace

TEST_CASE("mamba-130m's config.json becomes a mixer/s6 stack with MambaConfig's defaults") {
  const json native = translate(kMamba130m);
  CHECK(native.at("format") == "mambakit-2");
  CHECK(native.at("d_model") == 768);
  CHECK(native.at("n_layer") == 24);
  CHECK(native.at("vocab_size") == 50277);
  CHECK(native.at("pad_vocab_size_multiple") == 8);
  CHECK(native.at("tie_embeddings") == true);  // MambaConfig's default
  CHECK(native.at("residual_in_fp32") == true);
  CHECK(native.at("norm") == "rms");
  CHECK(native.at("norm_eps") == 1e-5);
  CHECK(native.at("head") == "lm");
  CHECK(native.at("mixer") == json{{"name", "s6"}, {"options", json::object()}});
  CHECK_FALSE(native.contains("mlp"));
  CHECK_FALSE(native.contains("layers"));
  CHECK(native.size() == 11);

  const auto config = parse(kMamba130m);
  CHECK_THAT(config.source, Contains("read by config/mamba-ssm"));
  CHECK(config.mixer.name == "s6");
  CHECK(config.padded_vocab_size() == 50280);
  CHECK(config.norm == mambakit::NormKind::kRms);
  CHECK(config.mlp.name.empty());
}

TEST_CASE("an empty official config takes every MambaConfig default") {
  const json native = translate(R"({"ssm_cfg": {}})");
  CHECK(native.at("d_model") == 2560);
  CHECK(native.at("n_layer") == 64);
  CHECK(native.at("vocab_size") == 50277);
  CHECK(native.at("pad_vocab_size_multiple") == 8);
  CHECK(native.at("tie_embeddings") == true);
  CHECK(native.at("residual_in_fp32") == true);
  CHECK(native.at("norm") == "rms");
}

TEST_CASE("the Mamba-1 keyword arguments become mixer/s6's options of the same names") {
  const json native = translate(R"({"d_model": 64, "n_layer": 2, "ssm_cfg": {"layer": "Mamba1", "d_state": 8,
      "d_conv": 3, "expand": 3, "dt_rank": 5, "dt_min": 0.002, "dt_max": 0.2, "dt_init": "constant",
      "dt_scale": 2.0, "dt_init_floor": 0.001, "conv_bias": false, "bias": true, "use_fast_path": true,
      "layer_idx": 7}})");
  const json expected_options = {{"d_state", 8},       {"d_conv", 3},         {"expand", 3},
                                 {"dt_rank", 5},       {"dt_min", 0.002},     {"dt_max", 0.2},
                                 {"dt_init", "constant"}, {"dt_scale", 2.0},  {"dt_init_floor", 0.001},
                                 {"conv_bias", false}, {"bias", true}};
  CHECK(native.at("mixer") == json{{"name", "s6"}, {"options", expected_options}});
  // And mixer/s6 takes them: the model builds.
  const auto model = mambakit::Model::create(parse(native.dump()), host());
  CHECK(model.parameter_count() > 0);
}

TEST_CASE("mamba2-130m's config.json and the Mamba-2 fixture become mixer/mamba2 stacks") {
  const json native = translate(kMamba2_130m);
  CHECK(native.at("mixer") == json{{"name", "mamba2"}, {"options", json::object()}});
  CHECK(native.at("pad_vocab_size_multiple") == 16);
  CHECK(native.at("norm") == "rms");
  CHECK_FALSE(native.contains("mlp"));  // d_intermediate 0
  CHECK_FALSE(native.contains("layers"));
  CHECK(parse(kMamba2_130m).padded_vocab_size() == 50288);

  const std::string fixture = read_file(mambakit::test::data_dir() / "models/mamba2_official/config.json");
  const json options = translate(fixture).at("mixer").at("options");
  CHECK(options == json{{"d_state", 8}, {"d_conv", 4}, {"expand", 2}, {"head_dim", 12}, {"n_groups", 2},
                        {"chunk_size", 16}});
  CHECK_THAT(parse(fixture).source, Contains("read by config/mamba-ssm"));
}

TEST_CASE("the Mamba-2 keyword arguments become mixer/mamba2's options") {
  const json options = translate(R"({"d_model": 64, "n_layer": 2, "ssm_cfg": {"layer": "Mamba2", "d_state": 32,
      "d_conv": 4, "expand": 2, "headdim": 16, "ngroups": 2, "chunk_size": 128, "dt_min": 0.002, "dt_max": 0.2,
      "dt_init_floor": 0.001, "dt_limit": [0.01, 0.5], "A_init_range": [2, 8], "conv_bias": false, "bias": true,
      "rmsnorm": true, "norm_before_gate": false, "D_has_hdim": false, "activation": "silu", "d_ssm": null,
      "learnable_init_states": false, "conv_init": null, "use_mem_eff_path": false, "sequence_parallel": true,
      "process_group": null, "layer_idx": 0}})")
                           .at("mixer")
                           .at("options");
  CHECK(options == json{{"d_state", 32},      {"d_conv", 4},        {"expand", 2},        {"head_dim", 16},
                        {"n_groups", 2},      {"chunk_size", 128},  {"dt_min", 0.002},    {"dt_max", 0.2},
                        {"dt_init_floor", 0.001}, {"dt_limit_min", 0.01}, {"dt_limit_max", 0.5},
                        {"a_init_min", 2},    {"a_init_max", 8},    {"conv_bias", false}, {"bias", true}});
  // An unbounded upper limit (Python's json writes Infinity, which the host reads as the largest
  // finite double) stays unbounded.
  const auto config = parse(R"({"d_model": 64, "n_layer": 2, "ssm_cfg": {"layer": "Mamba2", "headdim": 16,
      "dt_limit": [0.0, Infinity]}})");
  const json parsed = json::parse(config.mixer.options);
  CHECK(parsed.at("dt_limit_min") == 0.0);
  CHECK_FALSE(parsed.contains("dt_limit_max"));
}

TEST_CASE("a hybrid: attention layers, ssm_cfg_per_layer, the gated MLP and LayerNorm") {
  const json native = translate(hybrid());
  CHECK(native.at("d_model") == 32);
  CHECK(native.at("n_layer") == 5);
  CHECK(native.at("norm") == "layer");
  CHECK(native.at("tie_embeddings") == false);
  CHECK(native.at("mlp") == json{{"name", "gated_mlp"}, {"options", {{"d_intermediate", 40}}}});
  CHECK(native.at("mixer") == json{{"name", "mamba2"},
                                   {"options",
                                    {{"d_state", 8},
                                     {"d_conv", 3},
                                     {"head_dim", 16},
                                     {"n_groups", 2},
                                     {"chunk_size", 8},
                                     {"bias", true},
                                     {"dt_limit_min", 0.001},
                                     {"dt_limit_max", 100.0}}}});
  const json& layers = native.at("layers");
  REQUIRE(layers.size() == 3);
  // attn_cfg passes through unchanged: mixer/attention takes the official names.
  const json attention = {{"name", "attention"},
                          {"options",
                           {{"causal", true},
                            {"num_heads", 4},
                            {"num_heads_kv", 2},
                            {"head_dim", 8},
                            {"rotary_emb_dim", 4},
                            {"softmax_scale", 0.5},
                            {"qkv_proj_bias", false}}}};
  CHECK(layers.at("1") == attention);
  CHECK(layers.at("4") == attention);
  // Layer 2's ssm_cfg is whole: it inherits nothing from the top-level ssm_cfg (no d_conv 3,
  // no bias), as the official create_block would build a layer from it alone.
  CHECK(layers.at("2") == json{{"name", "s6"}, {"options", {{"d_state", 4}, {"dt_rank", 3}}}});

  const auto config = parse(hybrid());
  CHECK(config.norm == mambakit::NormKind::kLayer);
  CHECK(config.mlp.name == "gated_mlp");
  CHECK(config.mixer_of_layer(0).name == "mamba2");
  CHECK(config.mixer_of_layer(1).name == "attention");
  CHECK(config.mixer_of_layer(2).name == "s6");
  CHECK(config.mixer_of_layer(3).name == "mamba2");
  CHECK(config.mixer_of_layer(4).name == "attention");
  // Every component takes its options: the model builds.
  CHECK(mambakit::Model::create(config, host()).parameter_count() > 0);
}

TEST_CASE("ssm_cfg_per_layer entries do not inherit the top-level ssm_cfg") {
  const json layers = translate(R"({"d_model": 64, "n_layer": 3, "ssm_cfg": {"layer": "Mamba2", "d_state": 64},
      "ssm_cfg_per_layer": {"0": {"layer": "Mamba2", "headdim": 32}, "2": {}}})")
                          .at("layers");
  CHECK(layers.at("0") == json{{"name", "mamba2"}, {"options", {{"head_dim", 32}}}});
  CHECK(layers.at("2") == json{{"name", "s6"}, {"options", json::object()}});  // "layer" defaults to Mamba1
}

TEST_CASE("attn_cfg without causal passes the official MHA's default, causal false") {
  const json native =
      translate(R"({"d_model": 64, "n_layer": 2, "attn_layer_idx": [0], "attn_cfg": {"num_heads": 4}})");
  CHECK(native.at("layers").at("0") ==
        json{{"name", "attention"}, {"options", {{"num_heads", 4}, {"causal", false}}}});
  // mixer/attention refuses it by name when the model is created.
  CHECK_THROWS_WITH(mambakit::Model::create(parse(native.dump()), host()),
                    Contains("layer 0") && Contains("mixer/attention") && Contains("\"causal\" = false"));
  // With no attention layer attn_cfg is not used.
  CHECK_FALSE(translate(R"({"d_model": 64, "n_layer": 2, "attn_cfg": {"num_heads": 4}})").contains("layers"));
}

TEST_CASE("a model builds from an official config with an MLP, LayerNorm and mixed SSM layers") {
  const auto model = mambakit::Model::create(parse(R"({"d_model": 16, "d_intermediate": 20, "n_layer": 2,
      "vocab_size": 30, "ssm_cfg": {"d_state": 4}, "ssm_cfg_per_layer": {"1": {"layer": "Mamba2", "headdim": 8,
      "d_state": 8}}, "rms_norm": false, "tie_embeddings": false})"),
                                             host());
  bool fc1 = false, fc2 = false, norm2_bias = false, mamba2_layer = false;
  for (const auto& parameter : model.parameters()) {
    if (parameter.name == "backbone.layers.0.mlp.fc1.weight") {
      fc1 = parameter.shape == std::vector<std::int64_t>{256, 16};  // 20 rounds up to 128, twice
    }
    fc2 = fc2 || (parameter.name == "backbone.layers.1.mlp.fc2.weight" &&
                  parameter.shape == std::vector<std::int64_t>{16, 128});
    norm2_bias = norm2_bias || parameter.name == "backbone.layers.1.norm2.bias";
    mamba2_layer = mamba2_layer || parameter.name == "backbone.layers.1.mixer.dt_bias";
  }
  CHECK(fc1);
  CHECK(fc2);
  CHECK(norm2_bias);
  CHECK(mamba2_layer);
}

TEST_CASE("config/mamba-ssm refuses what it cannot translate, naming the key") {
  CHECK_THAT(translate_error(R"({"d_model": 64, "n_layer": 2, "norm_epsilon": 1e-6})"),
             Contains("unknown key \"norm_epsilon\"") && Contains("state-spaces/mamba"));
  CHECK_THAT(translate_error(R"({"d_model": 64, "n_layer": 2, "ssm_cfg": {"dstate": 16}})"),
             Contains("unknown key \"dstate\"") && Contains("ssm_cfg") && Contains("Mamba1"));
  CHECK_THAT(translate_error(R"({"d_model": 64, "n_layer": 2, "ssm_cfg": {"layer": "Mamba2", "dt_rank": 4}})"),
             Contains("unknown key \"dt_rank\"") && Contains("ssm_cfg") && Contains("Mamba2"));
  CHECK_THAT(translate_error(R"({"d_model": 64, "n_layer": 3, "ssm_cfg_per_layer": {"1": {"headdim": 8}}})"),
             Contains("unknown key \"headdim\"") && Contains("ssm_cfg_per_layer.1"));
  CHECK_THAT(translate_error(R"({"d_model": 64, "n_layer": 2, "ssm_cfg": {"layer": "Mamba3"}})"),
             Contains("ssm_cfg.layer = \"Mamba3\" is invalid"));
  CHECK_THAT(translate_error(R"({"d_model": 64, "n_layer": 2, "ssm_cfg_per_layer": {"1": {"layer": "S4"}}})"),
             Contains("ssm_cfg_per_layer.1.layer = \"S4\" is invalid"));
  CHECK_THAT(translate_error(R"({"d_model": 64, "n_layer": 2, "ssm_cfg": {"layer": "Mamba2", "rmsnorm": false}})"),
             Contains("ssm_cfg.rmsnorm = false is invalid"));
  CHECK_THAT(translate_error(R"({"d_model": 64, "n_layer": 2, "ssm_cfg": {"layer": "Mamba2", "dt_limit": 0.1}})"),
             Contains("ssm_cfg.dt_limit = 0.1 is invalid"));
  CHECK_THAT(translate_error(R"({"d_model": 64, "n_layer": 2, "ssm_cfg": []})"), Contains("ssm_cfg = [] is invalid"));
  // Layer indices.
  CHECK_THAT(translate_error(R"({"d_model": 64, "n_layer": 2, "attn_layer_idx": [2]})"),
             Contains("attn_layer_idx = [2] is invalid") && Contains("n_layer = 2"));
  CHECK_THAT(translate_error(R"({"d_model": 64, "n_layer": 4, "attn_layer_idx": [1, 1]})"),
             Contains("attn_layer_idx = [1,1] is invalid") && Contains("twice"));
  CHECK_THAT(translate_error(R"({"d_model": 64, "n_layer": 4, "attn_layer_idx": [-1]})"),
             Contains("attn_layer_idx = [-1] is invalid"));
  CHECK_THAT(translate_error(R"({"d_model": 64, "n_layer": 4, "attn_layer_idx": 1})"),
             Contains("attn_layer_idx = 1 is invalid"));
  CHECK_THAT(translate_error(R"({"d_model": 64, "n_layer": 2, "ssm_cfg_per_layer": {"2": {}}})"),
             Contains("ssm_cfg_per_layer.2 = {} is invalid") && Contains("n_layer = 2"));
  CHECK_THAT(translate_error(R"({"d_model": 64, "n_layer": 4, "ssm_cfg_per_layer": {"01": {}}})"),
             Contains("ssm_cfg_per_layer.01 = {} is invalid"));
  CHECK_THAT(translate_error(R"({"d_model": 64, "n_layer": 4, "ssm_cfg_per_layer": {"one": {}}})"),
             Contains("ssm_cfg_per_layer.one = {} is invalid"));
  CHECK_THAT(translate_error(R"({"d_model": 64, "n_layer": 4, "ssm_cfg_per_layer": {"3": 1}})"),
             Contains("ssm_cfg_per_layer.3 = 1 is invalid"));
  CHECK_THAT(translate_error(R"({"d_model": 64, "n_layer": 4, "attn_layer_idx": [3], "attn_cfg": {"num_heads": 2},
                                 "ssm_cfg_per_layer": {"3": {"layer": "Mamba2"}}})"),
             Contains("ssm_cfg_per_layer.3") && Contains("attn_layer_idx"));
  // Other values.
  CHECK_THAT(translate_error(R"({"d_model": 64, "n_layer": 0})"), Contains("n_layer = 0 is invalid"));
  CHECK_THAT(translate_error(R"({"d_model": 64, "n_layer": 2, "d_intermediate": -1})"),
             Contains("d_intermediate = -1 is invalid"));
  CHECK_THAT(translate_error(R"({"d_model": 64, "n_layer": 2, "rms_norm": "yes"})"),
             Contains("rms_norm = \"yes\" is invalid"));
  CHECK_THAT(translate_error(R"({"d_model": 64, "n_layer": 2, "attn_layer_idx": [0], "attn_cfg": [1]})"),
             Contains("attn_cfg = [1] is invalid"));
  // Through the host, the file and the adapter are named.
  CHECK_THROWS_WITH(parse(R"({"d_model": 64, "n_layer": 2, "ssm_cfg": {"layer": "Mamba3"}})"),
                    Contains("config.json") && Contains("ssm_cfg.layer"));
}

TEST_CASE("config/mamba-ssm leaves the formats other adapters own to them") {
  // Hugging Face configs (model_type) and the native format score 0.
  CHECK(score("mamba-ssm", R"({"model_type": "mamba", "d_model": 64, "n_layer": 2})") == 0);
  CHECK(score("mamba-ssm", R"({"model_type": "mamba2", "ssm_cfg": {}})") == 0);
  CHECK(score("mamba-ssm", R"({"format": "mambakit-2", "d_model": 64, "n_layer": 2})") == 0);
  CHECK(score("mamba-ssm", "not json") == 0);
  CHECK(score("mamba-ssm", "[1, 2]") == 0);
  for (const auto& dir : mambakit::test::model_fixture_dirs()) {
    const std::string text = read_file(dir / "config.json");
    if (json::parse(text).contains("model_type")) {
      INFO(dir);
      CHECK(score("mamba-ssm", text) == 0);
    }
  }
  // mambakit's first format: the bundled model, and files with its keys, stay config/mambakit-1's.
  const std::string bundled = read_file(mambakit::test::data_dir() / "../../models/default/config.json");
  CHECK(score("mamba-ssm", bundled) == 0);
  CHECK_THAT(parse(bundled).source, Contains("read by config/mambakit-1"));
  for (const char* v1 : {R"({"d_model": 16, "n_layer": 2, "d_state": 4, "vocab_size": 257})",
                         R"({"task": "causal_lm", "d_model": 16, "n_layer": 2})",
                         R"({"d_model": 16, "n_layer": 1, "mixer_options": {"decay": 0.8}})",
                         R"({"d_model": 16, "n_layer": 2, "mixer": ["s6", "s6"]})",
                         R"({"d_model": 16, "n_layer": 2, "norm_eps": 1e-6})"}) {
    INFO(v1);
    CHECK(score("mamba-ssm", v1) == 0);
    CHECK_THAT(parse(v1).source, Contains("read by config/mambakit-1"));
  }
  // Files with a key only MambaConfig has, or with d_model and n_layer alone, are official.
  CHECK(score("mamba-ssm", R"({"ssm_cfg": {}})") == 50);
  CHECK(score("mamba-ssm", R"({"d_model": 16, "rms_norm": true})") == 50);
  CHECK(score("mamba-ssm", R"({"d_model": 16, "n_layer": 2})") == 50);
  CHECK(score("mamba-ssm", R"({"d_model": 16})") == 0);
  // Above mambakit-1 (10), below the Hugging Face adapters (100).
  CHECK(score("mambakit-1", kMamba130m) == 10);
  CHECK(score("mamba-hf", R"({"model_type": "mamba"})") == 100);
  CHECK_THAT(parse(R"({"d_model": 64, "n_layer": 2, "vocab_size": 100})").source,
             Contains("read by config/mamba-ssm"));
}
