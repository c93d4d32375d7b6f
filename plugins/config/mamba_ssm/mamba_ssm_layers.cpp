#include "mamba_ssm_layers.hpp"

#include <limits>
#include <stdexcept>

#include "mambakit/sdk/util/config_translation.hpp"

namespace mambakit::config_mamba_ssm {

namespace {

using nlohmann::json;
using sdk::util::ConfigKeys;
using sdk::util::invalid_config_value;

/// Requires `key` of `object`, when present (a null included), to equal `value`: the official
/// module's behaviour that the mixer implements. The error names `path`.`key`.
void require_equal(ConfigKeys& keys, const json& object, const std::string& path, const char* key, const json& value,
                   const std::string& why) {
  keys.ignore({key});
  const auto found = object.find(key);
  if (found != object.end() && *found != value) invalid_config_value(path + "." + key, *found, why);
}

/// "ssm_cfg (a Mamba2 layer's) of a state-spaces/mamba": how reject_unread names the object.
std::string described(const std::string& path, const char* layer) {
  return path + " (a " + std::string(layer) + " layer's keyword arguments) of a state-spaces/mamba";
}

/// The keyword arguments that the official Mamba and Mamba2 share, into `options` under the
/// same names (those of mixer/s6's and mixer/mamba2's options).
json shared_options(ConfigKeys& keys) {
  keys.ignore({"layer"});
  json options = json::object();
  keys.move({{"d_state", "d_state"},
             {"d_conv", "d_conv"},
             {"expand", "expand"},
             {"dt_min", "dt_min"},
             {"dt_max", "dt_max"},
             {"dt_init_floor", "dt_init_floor"},
             {"conv_bias", "conv_bias"},
             {"bias", "bias"}},
            options);
  return options;
}

/// The official Mamba (mamba_ssm/modules/mamba_simple.py) -> mixer/s6, whose options have the
/// constructor's names.
json mamba1_mixer(const json& ssm_cfg, const std::string& path) {
  ConfigKeys keys(ssm_cfg);
  json options = shared_options(keys);
  keys.move({{"dt_rank", "dt_rank"}, {"dt_init", "dt_init"}, {"dt_scale", "dt_scale"}}, options);
  // The fused kernel path computes the same function; layer_idx only names the layer.
  keys.ignore({"use_fast_path", "layer_idx"});
  keys.reject_unread(described(path, "Mamba1").c_str());
  return {{"name", "s6"}, {"options", options}};
}

/// Puts a [lo, hi] time-step limit into mixer/mamba2's dt_limit_min / dt_limit_max. An upper
/// end that is null, infinite, or the largest double (how the host reads Python's Infinity)
/// stays unbounded.
void translate_dt_limit(const std::string& key, const json& limit, json& options) {
  if (limit.is_null()) return;
  if (!limit.is_array() || limit.size() != 2 || !limit[0].is_number() ||
      !(limit[1].is_number() || limit[1].is_null())) {
    invalid_config_value(key, limit, "must be a list [min, max] of two numbers");
  }
  options["dt_limit_min"] = limit[0];
  if (limit[1].is_number() && limit[1].get<double>() < std::numeric_limits<double>::max()) {
    options["dt_limit_max"] = limit[1];
  }
}

/// The official Mamba2 (mamba_ssm/modules/mamba2.py) -> mixer/mamba2.
json mamba2_mixer(const json& ssm_cfg, const std::string& path) {
  ConfigKeys keys(ssm_cfg);
  json options = shared_options(keys);
  keys.move({{"headdim", "head_dim"}, {"ngroups", "n_groups"}, {"chunk_size", "chunk_size"}}, options);
  translate_dt_limit(path + ".dt_limit", keys.take("dt_limit"), options);
  const json a_range = keys.take("A_init_range");
  if (!a_range.is_null()) {
    if (!a_range.is_array() || a_range.size() != 2 || !a_range[0].is_number() || !a_range[1].is_number()) {
      invalid_config_value(path + ".A_init_range", a_range, "must be a list [min, max] of two numbers");
    }
    options["a_init_min"] = a_range[0];
    options["a_init_max"] = a_range[1];
  }
  require_equal(keys, ssm_cfg, path, "rmsnorm", true, "mixer/mamba2 normalises its gated output");
  require_equal(keys, ssm_cfg, path, "norm_before_gate", false, "mixer/mamba2 gates before its norm");
  require_equal(keys, ssm_cfg, path, "D_has_hdim", false, "mixer/mamba2 has one D per head");
  require_equal(keys, ssm_cfg, path, "activation", "silu", "mixer/mamba2 uses silu");
  require_equal(keys, ssm_cfg, path, "d_ssm", nullptr, "mixer/mamba2 runs the SSM over all of d_inner");
  require_equal(keys, ssm_cfg, path, "learnable_init_states", false, "mixer/mamba2 starts from the zero state");
  require_equal(keys, ssm_cfg, path, "conv_init", nullptr,
                "mixer/mamba2 initialises its conv as nn.Conv1d does (the official default)");
  // Kernel and memory choices of the official code (the same math); layer_idx names the layer.
  keys.ignore({"use_mem_eff_path", "sequence_parallel", "process_group", "layer_idx"});
  keys.reject_unread(described(path, "Mamba2").c_str());
  return {{"name", "mamba2"}, {"options", options}};
}

}  // namespace

json ssm_mixer(const json& ssm_cfg, const std::string& path) {
  if (!ssm_cfg.is_object()) invalid_config_value(path, ssm_cfg, "must be a JSON object");
  const json layer = ssm_cfg.value("layer", json("Mamba1"));
  if (layer == "Mamba1") return mamba1_mixer(ssm_cfg, path);
  if (layer == "Mamba2") return mamba2_mixer(ssm_cfg, path);
  invalid_config_value(path + ".layer", layer,
                       "mambakit reads \"Mamba1\" (mixer/s6) and \"Mamba2\" (mixer/mamba2) layers; it has no "
                       "mixer for this one");
}

json attention_mixer(const json& attn_cfg) {
  if (!attn_cfg.is_object()) invalid_config_value("attn_cfg", attn_cfg, "must be a JSON object");
  json options = attn_cfg;
  if (!options.contains("causal")) options["causal"] = false;
  return {{"name", "attention"}, {"options", options}};
}

}  // namespace mambakit::config_mamba_ssm
