// Mamba-2 checkpoints' configs as published: Hugging Face model_type "mamba2" (mixer/mamba2's
// adapter) and state-spaces/mamba's layout with ssm_cfg.layer "Mamba2" (config/mamba-ssm, whose
// other layouts tests/config_adapters checks). Their
// tensors load and compute in test_golden_fixtures.cpp; here, what the configs mean and how
// a key that cannot be honoured is refused.

#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "fixtures.hpp"
#include "mambakit/config.hpp"
#include "mambakit/error.hpp"
#include "mambakit/model.hpp"

using Catch::Matchers::Contains;

namespace {

mambakit::ModelConfig parse(const std::string& text) {
  return mambakit::parse_model_config(text, "config.json", mambakit::test::in_tree_plugins());
}

nlohmann::json options_of(const mambakit::ModelConfig& config) {
  return nlohmann::json::parse(config.mixer.options);
}

/// Mamba2Config as transformers serialises it for a small model (Python's json writes the
/// default limit's upper end as the bare word Infinity).
std::string hf_config(const std::string& extra = "") {
  return R"({"model_type": "mamba2", "architectures": ["Mamba2ForCausalLM"], "hidden_size": 64,
    "num_hidden_layers": 2, "vocab_size": 100, "state_size": 16, "expand": 2, "head_dim": 16, "num_heads": 8,
    "n_groups": 2, "conv_kernel": 4, "chunk_size": 256, "use_bias": false, "use_conv_bias": true,
    "hidden_act": "silu", "initializer_range": 0.1, "residual_in_fp32": true, "time_step_rank": 4,
    "time_step_min": 0.001, "time_step_max": 0.1, "time_step_floor": 0.0001,
    "time_step_limit": [0.0, Infinity], "rescale_prenorm_residual": false, "use_cache": true, "rms_norm": true,
    "norm_before_gate": false, "layer_norm_epsilon": 1e-06, "tie_word_embeddings": false,
    "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2, "torch_dtype": "float32")" +
         extra + "}";
}

std::string official_config(const std::string& ssm_extra = "", const std::string& extra = "") {
  return R"({"d_model": 64, "d_intermediate": 0, "n_layer": 2, "vocab_size": 50277,
    "ssm_cfg": {"layer": "Mamba2", "d_state": 32, "headdim": 16, "ngroups": 1, "chunk_size": 256)" +
         ssm_extra + R"(}, "attn_layer_idx": [], "attn_cfg": {}, "rms_norm": true, "residual_in_fp32": true,
    "fused_add_norm": true, "pad_vocab_size_multiple": 16, "tie_embeddings": true)" +
         extra + "}";
}

}  // namespace

TEST_CASE("a Hugging Face mamba2 config becomes mixer/mamba2 with its options, Infinity included") {
  const auto config = parse(hf_config());
  CHECK(config.mixer.name == "mamba2");
  CHECK(config.head.name == "lm");
  CHECK(config.d_model == 64);
  CHECK(config.n_layer == 2);
  CHECK(config.norm_eps == 1e-6);
  CHECK_FALSE(config.tie_embeddings);
  const auto options = options_of(config);
  CHECK(options.at("head_dim") == 16);
  CHECK(options.at("n_groups") == 2);
  CHECK(options.at("norm_eps") == 1e-6);  // Hugging Face's gated norm takes layer_norm_epsilon
  CHECK(options.at("dt_limit_min") == 0.0);
  // The model builds: 8 heads of 16 over d_inner 128, in 2 groups.
  const auto model = mambakit::Model::create(config, mambakit::test::in_tree_plugins());
  CHECK(model.parameter_count() > 0);
}

TEST_CASE("Hugging Face mamba2 keys that cannot be honoured are refused by name") {
  CHECK_THROWS_WITH(parse(hf_config(R"(, "use_flash_attention": true)")),
                    Contains("unknown key \"use_flash_attention\"") && Contains("Hugging Face mamba2"));
  CHECK_THROWS_WITH(parse(hf_config(R"(, "norm_before_gate": true)")),
                    Contains("norm_before_gate = true is invalid"));
  CHECK_THROWS_WITH(parse(hf_config(R"(, "hidden_act": "gelu")")), Contains("hidden_act = \"gelu\" is invalid"));
  // 8 heads of 16 need d_inner 128; 6 heads contradict it.
  CHECK_THROWS_WITH(mambakit::Model::create(parse(hf_config(R"(, "num_heads": 6)")), mambakit::test::in_tree_plugins()),
                    Contains("\"num_heads\" = 6 is invalid"));
  CHECK_THROWS_WITH(mambakit::Model::create(parse(hf_config(R"(, "n_groups": 3)")), mambakit::test::in_tree_plugins()),
                    Contains("\"n_groups\" = 3 is invalid"));
  CHECK_THROWS_WITH(parse(R"({"model_type": "mamba2", "time_step_limit": [0.0, NaN]})"),
                    Contains("config.json: NaN at byte"));
}

TEST_CASE("the official Mamba2 layout becomes mixer/mamba2 with a padded vocabulary") {
  const auto config = parse(official_config());
  CHECK(config.mixer.name == "mamba2");
  CHECK(config.vocab_size == 50277);
  CHECK(config.padded_vocab_size() == 50288);
  CHECK(config.norm_eps == 1e-5);
  CHECK(config.tie_embeddings);
  const auto options = options_of(config);
  CHECK(options.at("head_dim") == 16);
  CHECK(options.at("d_state") == 32);
  CHECK(options.at("n_groups") == 1);
  CHECK_FALSE(options.contains("dt_limit_max"));
  CHECK(options_of(parse(official_config(R"(, "dt_limit": [0.001, 0.2])"))).at("dt_limit_max") == 0.2);
}

TEST_CASE("official-layout keys that mixer/mamba2 cannot honour are refused by name") {
  CHECK_THROWS_WITH(parse(official_config(R"(, "D_has_hdim": true)")), Contains("D_has_hdim = true is invalid"));
  CHECK_THROWS_WITH(parse(official_config(R"(, "d_ssm": 64)")), Contains("d_ssm = 64 is invalid"));
  CHECK_THROWS_WITH(parse(official_config(R"(, "dstate": 16)")),
                    Contains("unknown key \"dstate\"") && Contains("ssm_cfg"));
  // Without ssm_cfg.layer "Mamba2" the layers are Mamba-1's.
  CHECK(parse(R"({"d_model": 64, "n_layer": 2, "vocab_size": 100})").mixer.name == "s6");
}
