#include "mamba2_config_adapters.hpp"

#include <cmath>
#include <string>

#include "mambakit/sdk/util/config_translation.hpp"

namespace mambakit::mixer_mamba2 {

namespace {

using nlohmann::json;
using sdk::util::ConfigKeys;
using sdk::util::invalid_config_value;

/// Puts a [lo, hi] time-step limit into mixer/mamba2's dt_limit_min / dt_limit_max (an
/// infinite or absent upper end stays unbounded).
void translate_dt_limit(const char* key, const json& limit, json& options) {
  if (limit.is_null()) return;
  if (!limit.is_array() || limit.size() != 2 || !limit[0].is_number() ||
      !(limit[1].is_number() || limit[1].is_null())) {
    invalid_config_value(key, limit, "must be a list [min, max] of two numbers");
  }
  options["dt_limit_min"] = limit[0];
  if (limit[1].is_number() && std::isfinite(limit[1].get<double>())) options["dt_limit_max"] = limit[1];
}

}  // namespace

std::int32_t HfMamba2ConfigAdapter::score(const char* config_json) const noexcept {
  return sdk::util::score_config(config_json, 100, [](const json& root) { return root.value("model_type", json()) == "mamba2"; });
}

sdk::Status HfMamba2ConfigAdapter::translate(const char* config_json, sdk::TextSink* out) const noexcept {
  return sdk::util::translating_config([&] {
    const json root = sdk::util::parse_config_object(config_json);
    ConfigKeys keys(root);
    keys.ignore({"model_type"});
    json native = {{"format", sdk::util::kNativeConfigFormat}, {"head", "lm"}, {"pad_vocab_size_multiple", 1}};
    keys.move({{"hidden_size", "d_model"},
               {"num_hidden_layers", "n_layer"},
               {"layer_norm_epsilon", "norm_eps"},
               {"residual_in_fp32", "residual_in_fp32"},
               {"vocab_size", "vocab_size"},
               {"tie_word_embeddings", "tie_embeddings"}},
              native);
    json options = json::object();
    keys.move({{"state_size", "d_state"},
               {"conv_kernel", "d_conv"},
               {"expand", "expand"},
               {"head_dim", "head_dim"},
               {"num_heads", "num_heads"},
               {"n_groups", "n_groups"},
               {"chunk_size", "chunk_size"},
               {"time_step_min", "dt_min"},
               {"time_step_max", "dt_max"},
               {"time_step_floor", "dt_init_floor"},
               {"use_conv_bias", "conv_bias"},
               {"use_bias", "bias"},
               {"layer_norm_epsilon", "norm_eps"}},  // Hugging Face's gated norm uses it too
              options);
    translate_dt_limit("time_step_limit", keys.take("time_step_limit"), options);
    native["mixer"] = {{"name", "mamba2"}, {"options", options}};
    sdk::util::ignore_hf_generic_keys(keys);
    // time_step_rank is a Mamba-1 leftover that Mamba2Config keeps and never uses.
    keys.ignore({"time_step_rank"});
    keys.require_equal("hidden_act", "silu", "mixer/mamba2 uses silu");
    keys.require_equal("rms_norm", true, "mixer/mamba2 normalises its gated output with RMSNorm");
    keys.require_equal("norm_before_gate", false,
                       "mixer/mamba2 gates before its norm (norm(y * silu(z))), as Hugging Face always does");
    keys.reject_unread("Hugging Face mamba2");
    return sdk::util::write_config(native, out);
  });
}

std::int32_t OfficialMamba2ConfigAdapter::score(const char* config_json) const noexcept {
  return sdk::util::score_config(config_json, 50, [](const json& root) {
    const auto ssm_cfg = root.find("ssm_cfg");
    return !root.contains("format") && !root.contains("model_type") && ssm_cfg != root.end() &&
           ssm_cfg->is_object() && ssm_cfg->value("layer", json()) == "Mamba2";
  });
}

sdk::Status OfficialMamba2ConfigAdapter::translate(const char* config_json, sdk::TextSink* out) const noexcept {
  return sdk::util::translating_config([&] {
    const json root = sdk::util::parse_config_object(config_json);
    ConfigKeys keys(root);
    // MambaLMHeadModel: RMSNorm blocks with eps 1e-5, an LM head, the vocabulary padded.
    json native = {{"format", sdk::util::kNativeConfigFormat}, {"head", "lm"}, {"norm_eps", 1e-5}};
    keys.move({{"d_model", "d_model"},
               {"n_layer", "n_layer"},
               {"vocab_size", "vocab_size"},
               {"residual_in_fp32", "residual_in_fp32"},
               {"pad_vocab_size_multiple", "pad_vocab_size_multiple"},
               {"tie_embeddings", "tie_embeddings"}},
              native);
    keys.require_equal("rms_norm", true, "mixer/mamba2 stacks use RMSNorm");
    keys.require_equal("d_intermediate", 0, "MLP sub-blocks are not supported by mixer/mamba2's config adapter");
    keys.require_equal("attn_layer_idx", json::array(), "attention layers are not supported by mixer/mamba2's config adapter");
    keys.require_equal("attn_cfg", json::object(), "attention layers are not supported by mixer/mamba2's config adapter");
    keys.ignore({"fused_add_norm"});  // a kernel choice of the official code; the same math

    const json ssm_cfg = keys.take("ssm_cfg");
    ConfigKeys ssm(ssm_cfg);
    ssm.ignore({"layer"});
    json options = json::object();
    ssm.move({{"d_state", "d_state"},
              {"d_conv", "d_conv"},
              {"expand", "expand"},
              {"headdim", "head_dim"},
              {"ngroups", "n_groups"},
              {"chunk_size", "chunk_size"},
              {"dt_min", "dt_min"},
              {"dt_max", "dt_max"},
              {"dt_init_floor", "dt_init_floor"},
              {"conv_bias", "conv_bias"},
              {"bias", "bias"}},
             options);
    translate_dt_limit("ssm_cfg.dt_limit", ssm.take("dt_limit"), options);
    const json a_range = ssm.take("A_init_range");
    if (!a_range.is_null()) {
      if (!a_range.is_array() || a_range.size() != 2 || !a_range[0].is_number() || !a_range[1].is_number()) {
        invalid_config_value("ssm_cfg.A_init_range", a_range, "must be a list [min, max] of two numbers");
      }
      options["a_init_min"] = a_range[0];
      options["a_init_max"] = a_range[1];
    }
    ssm.require_equal("rmsnorm", true, "mixer/mamba2 normalises its gated output");
    ssm.require_equal("norm_before_gate", false, "mixer/mamba2 gates before its norm");
    ssm.require_equal("D_has_hdim", false, "mixer/mamba2 has one D per head");
    ssm.require_equal("activation", "silu", "mixer/mamba2 uses silu");
    ssm.require_equal("d_ssm", nullptr, "mixer/mamba2 runs the SSM over all of d_inner");
    ssm.require_equal("learnable_init_states", false, "mixer/mamba2 starts from the zero state");
    // Kernel and memory choices of the official code; the same math.
    ssm.ignore({"use_mem_eff_path", "sequence_parallel", "process_group", "layer_idx"});
    ssm.reject_unread("ssm_cfg of a state-spaces/mamba Mamba2");
    native["mixer"] = {{"name", "mamba2"}, {"options", options}};
    keys.reject_unread("state-spaces/mamba");
    return sdk::util::write_config(native, out);
  });
}

}  // namespace mambakit::mixer_mamba2
