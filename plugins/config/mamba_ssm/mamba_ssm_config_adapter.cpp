#include "mamba_ssm_config_adapter.hpp"

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <set>
#include <string>

#include "mamba_ssm_layers.hpp"
#include "mambakit/sdk/util/config_translation.hpp"

namespace mambakit::config_mamba_ssm {

namespace {

using nlohmann::json;
using sdk::util::ConfigKeys;
using sdk::util::invalid_config_value;

/// Keys of MambaConfig (and our ssm_cfg_per_layer) that mambakit's first format does not have.
constexpr const char* kOfficialOnlyKeys[] = {"ssm_cfg",       "d_intermediate", "attn_layer_idx",   "attn_cfg",
                                             "rms_norm",      "fused_add_norm", "ssm_cfg_per_layer"};
/// Keys of mambakit's first format that MambaConfig does not have.
constexpr const char* kMambakitV1OnlyKeys[] = {
    "task",  "mixer",  "mixer_options", "norm_eps", "num_labels", "pooling", "dropout",       "labels",   "d_state",
    "d_conv", "expand", "dt_rank",      "dt_min",   "dt_max",     "dt_init", "dt_scale", "dt_init_floor", "conv_bias",
    "bias"};

/// MambaConfig's defaults (mamba_ssm/models/config_mamba.py).
constexpr std::int64_t kDefaultDModel = 2560, kDefaultNLayer = 64, kDefaultVocab = 50277, kDefaultPadMultiple = 8;

bool has_any(const json& root, const auto& keys) {
  return std::any_of(std::begin(keys), std::end(keys), [&](const char* key) { return root.contains(key); });
}

/// An integer >= `minimum` under `key`, or `fallback` when absent.
std::int64_t integer(ConfigKeys& keys, const char* key, std::int64_t fallback, std::int64_t minimum) {
  const json value = keys.take(key, fallback);
  if (!value.is_number_integer() || value.get<std::int64_t>() < minimum) {
    invalid_config_value(key, value, "must be an integer >= " + std::to_string(minimum));
  }
  return value.get<std::int64_t>();
}

/// attn_layer_idx: distinct integers in [0, n_layer).
std::set<std::int64_t> attention_layers(const json& list, std::int64_t n_layer) {
  if (!list.is_array()) invalid_config_value("attn_layer_idx", list, "must be a list of layer indices");
  std::set<std::int64_t> layers;
  for (const json& item : list) {
    if (!item.is_number_integer() || item.get<std::int64_t>() < 0 || item.get<std::int64_t>() >= n_layer) {
      invalid_config_value("attn_layer_idx", list,
                           "each entry must be a layer index in [0, n_layer = " + std::to_string(n_layer) + "), not " +
                               item.dump());
    }
    if (!layers.insert(item.get<std::int64_t>()).second) {
      invalid_config_value("attn_layer_idx", list, "layer " + item.dump() + " is listed twice");
    }
  }
  return layers;
}

/// The layer index a key of ssm_cfg_per_layer names: a decimal number in [0, n_layer), written
/// without leading zeros.
std::int64_t per_layer_index(const std::string& key, const json& value, std::int64_t n_layer) {
  const bool digits = !key.empty() && key.size() <= 9 &&
                      std::all_of(key.begin(), key.end(), [](char c) { return c >= '0' && c <= '9'; });
  const std::int64_t index = digits ? std::stoll(key) : -1;
  if (!digits || std::to_string(index) != key || index >= n_layer) {
    invalid_config_value("ssm_cfg_per_layer." + key, value,
                         "its key must be a layer index in [0, n_layer = " + std::to_string(n_layer) +
                             ") written in decimal (\"0\", \"1\", ...)");
  }
  return index;
}

}  // namespace

std::int32_t MambaSsmConfigAdapter::score(const char* config_json) const noexcept {
  return sdk::util::score_config(config_json, 50, [](const json& root) {
    if (root.contains("format") || root.contains("model_type") || has_any(root, kMambakitV1OnlyKeys)) return false;
    return has_any(root, kOfficialOnlyKeys) || (root.contains("d_model") && root.contains("n_layer"));
  });
}

sdk::Status MambaSsmConfigAdapter::translate(const char* config_json, sdk::TextSink* out) const noexcept {
  return sdk::util::translating_config([&] {
    const json root = sdk::util::parse_config_object(config_json);
    ConfigKeys keys(root);
    // MambaLMHeadModel: MixerModel's norm_epsilon 1e-5, an LM head over the padded vocabulary.
    json native = {{"format", sdk::util::kNativeConfigFormat},
                   {"head", "lm"},
                   {"norm_eps", 1e-5},
                   {"d_model", kDefaultDModel},
                   {"vocab_size", kDefaultVocab},
                   {"pad_vocab_size_multiple", kDefaultPadMultiple},
                   {"tie_embeddings", true},
                   {"residual_in_fp32", true}};
    keys.move({{"d_model", "d_model"},
               {"vocab_size", "vocab_size"},
               {"pad_vocab_size_multiple", "pad_vocab_size_multiple"},
               {"tie_embeddings", "tie_embeddings"},
               {"residual_in_fp32", "residual_in_fp32"}},
              native);
    const std::int64_t n_layer = integer(keys, "n_layer", kDefaultNLayer, 1);
    native["n_layer"] = n_layer;
    const json rms_norm = keys.take("rms_norm", true);
    if (!rms_norm.is_boolean()) invalid_config_value("rms_norm", rms_norm, "must be true or false");
    native["norm"] = rms_norm.get<bool>() ? "rms" : "layer";
    keys.ignore({"fused_add_norm"});  // a kernel choice of the official code; the same math

    const std::int64_t d_intermediate = integer(keys, "d_intermediate", 0, 0);
    if (d_intermediate > 0) native["mlp"] = {{"name", "gated_mlp"}, {"options", {{"d_intermediate", d_intermediate}}}};

    native["mixer"] = ssm_mixer(keys.take("ssm_cfg", json::object()), "ssm_cfg");
    json layers = json::object();
    const std::set<std::int64_t> attention = attention_layers(keys.take("attn_layer_idx", json::array()), n_layer);
    const json attn_cfg = keys.take("attn_cfg", json::object());
    if (!attention.empty()) {
      const json choice = attention_mixer(attn_cfg);
      for (const std::int64_t layer : attention) layers[std::to_string(layer)] = choice;
    } else if (!attn_cfg.is_object()) {
      invalid_config_value("attn_cfg", attn_cfg, "must be a JSON object");
    }
    // Each entry is a whole ssm_cfg: keys it leaves out take the module's defaults, not
    // the top-level ssm_cfg's values (as create_block would build the layer from it alone).
    const json per_layer = keys.take("ssm_cfg_per_layer", json::object());
    if (!per_layer.is_object()) {
      invalid_config_value("ssm_cfg_per_layer", per_layer, "must be an object from layer index to ssm_cfg");
    }
    for (const auto& [key, ssm_cfg] : per_layer.items()) {
      const std::int64_t layer = per_layer_index(key, ssm_cfg, n_layer);
      if (attention.count(layer) != 0) {
        invalid_config_value("ssm_cfg_per_layer." + key, ssm_cfg,
                             "layer " + key + " is also in attn_layer_idx; a layer is either attention " +
                                 "(attn_layer_idx) or an SSM (ssm_cfg_per_layer), not both");
      }
      layers[key] = ssm_mixer(ssm_cfg, "ssm_cfg_per_layer." + key);
    }
    if (!layers.empty()) native["layers"] = layers;
    keys.reject_unread("state-spaces/mamba");
    return sdk::util::write_config(native, out);
  });
}

}  // namespace mambakit::config_mamba_ssm
