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

}  // namespace mambakit::mixer_mamba2
