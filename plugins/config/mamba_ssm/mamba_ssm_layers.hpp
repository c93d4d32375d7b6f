#pragma once
// One layer's mixer of a state-spaces/mamba config, as a native {"name", "options"} choice:
// an ssm_cfg object (the official Mamba or Mamba2 constructor's keyword arguments) or attn_cfg
// (the official MHA's). Errors name the key by its path in config.json, e.g.
// "ssm_cfg_per_layer.2.layer".

#include <nlohmann/json.hpp>

#include <string>

namespace mambakit::config_mamba_ssm {

/// The mixer an ssm_cfg object at `path` builds: its "layer" (default "Mamba1") picks mixer/s6
/// (Mamba1) or mixer/mamba2 (Mamba2), the other keys become that mixer's options. Throws
/// std::invalid_argument for another layer, an unknown key, or a value the mixer cannot honour.
nlohmann::json ssm_mixer(const nlohmann::json& ssm_cfg, const std::string& path);

/// The mixer/attention choice of an attn_cfg object: its keys passed through unchanged (the
/// mixer validates them), with "causal": false added when absent (the official MHA's default,
/// which the mixer refuses by name: a causal LM's layer must be causal).
nlohmann::json attention_mixer(const nlohmann::json& attn_cfg);

}  // namespace mambakit::config_mamba_ssm
