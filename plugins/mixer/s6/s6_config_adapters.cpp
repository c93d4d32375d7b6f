#include "s6_config_adapters.hpp"

#include <algorithm>
#include <string>

#include "mambakit/sdk/util/config_translation.hpp"

namespace mambakit::mixer_s6 {

namespace {

using nlohmann::json;
using sdk::util::ConfigKeys;
using sdk::util::invalid_config_value;

/// The Mamba-1 keys of mambakit's first format, which are mixer/s6's options of the same name.
constexpr const char* kS6Keys[] = {"d_state", "d_conv", "expand", "dt_rank", "dt_min", "dt_max",
                                   "dt_init", "dt_scale", "dt_init_floor", "conv_bias", "bias"};

}  // namespace

std::int32_t HfMambaConfigAdapter::score(const char* config_json) const noexcept {
  return sdk::util::score_config(config_json, 100, [](const json& root) { return root.value("model_type", json()) == "mamba"; });
}

sdk::Status HfMambaConfigAdapter::translate(const char* config_json, sdk::TextSink* out) const noexcept {
  return sdk::util::translating_config([&] {
    const json root = sdk::util::parse_config_object(config_json);
    ConfigKeys keys(root);
    keys.ignore({"model_type"});
    json native = {{"format", sdk::util::kNativeConfigFormat}, {"head", "lm"}, {"pad_vocab_size_multiple", 1}};
    keys.move({{"hidden_size", "d_model"},
               {"num_hidden_layers", "n_layer"},
               {"layer_norm_epsilon", "norm_eps"},
               {"residual_in_fp32", "residual_in_fp32"},
               {"vocab_size", "vocab_size"},  // Hugging Face stores the padded size
               {"tie_word_embeddings", "tie_embeddings"}},
              native);
    json options = json::object();
    keys.move({{"state_size", "d_state"},
               {"conv_kernel", "d_conv"},
               {"expand", "expand"},
               {"time_step_rank", "dt_rank"},
               {"time_step_min", "dt_min"},
               {"time_step_max", "dt_max"},
               {"time_step_init_scheme", "dt_init"},
               {"time_step_scale", "dt_scale"},
               {"time_step_floor", "dt_init_floor"},
               {"use_conv_bias", "conv_bias"},
               {"use_bias", "bias"}},
              options);
    native["mixer"] = {{"name", "s6"}, {"options", options}};
    // Keys that change nothing in the model mambakit builds: token ids, initialisation,
    // training-time and library settings, PretrainedConfig's generic attributes, and the
    // duplicates some checkpoints carry from mamba_ssm's config. Any other key is an error.
    sdk::util::ignore_hf_generic_keys(keys);
    // The Mamba-1 HF options that change nothing here, and the duplicates some checkpoints
    // carry from mamba_ssm's config.
    keys.ignore({"use_mambapy", "use_associative_scan", "d_model", "n_layer", "fused_add_norm",
                 "pad_vocab_size_multiple", "ssm_cfg"});
    keys.require_equal("hidden_act", "silu", "mambakit's Mamba-1 mixer uses silu");
    keys.require_equal("rms_norm", true, "mambakit's Mamba-1 stacks use RMSNorm");
    const json size = keys.take("intermediate_size");
    if (!size.is_null()) {
      const std::int64_t hidden = root.value("hidden_size", std::int64_t{768});
      const std::int64_t expand = root.value("expand", std::int64_t{2});
      if (!size.is_number_integer() || size.get<std::int64_t>() != expand * hidden) {
        invalid_config_value("intermediate_size", size,
                             "must equal expand * hidden_size = " + std::to_string(expand) + " * " +
                                 std::to_string(hidden));
      }
    }
    keys.reject_unread("Hugging Face mamba");
    return sdk::util::write_config(native, out);
  });
}

std::int32_t MambakitV1ConfigAdapter::score(const char* config_json) const noexcept {
  return sdk::util::score_config(config_json, 10, [](const json& root) {
    return !root.contains("format") && !root.contains("model_type");
  });
}

sdk::Status MambakitV1ConfigAdapter::translate(const char* config_json, sdk::TextSink* out) const noexcept {
  return sdk::util::translating_config([&] {
    const json root = sdk::util::parse_config_object(config_json);
    ConfigKeys keys(root);
    json native = {{"format", sdk::util::kNativeConfigFormat}};
    keys.move({{"d_model", "d_model"},
               {"n_layer", "n_layer"},
               {"norm_eps", "norm_eps"},
               {"residual_in_fp32", "residual_in_fp32"},
               {"vocab_size", "vocab_size"},
               {"pad_vocab_size_multiple", "pad_vocab_size_multiple"},
               {"tie_embeddings", "tie_embeddings"}},
              native);
    // Format 1 named a task; its head took the task's keys.
    const json task = keys.take("task", "causal_lm");
    json head_options = json::object();
    std::string head;
    if (task == "causal_lm") {
      head = "lm";
    } else if (task == "sequence_classification") {
      head = "classification";
      keys.move({{"num_labels", "num_labels"}, {"pooling", "pooling"}, {"dropout", "dropout"}, {"labels", "labels"}},
                head_options);
    } else if (task == "feature_extraction") {
      head = "features";
      keys.move({{"pooling", "pooling"}}, head_options);
    } else {
      invalid_config_value("task", task, "must be causal_lm, sequence_classification or feature_extraction");
    }
    native["head"] = {{"name", head}, {"options", head_options}};
    json s6_options = json::object();
    for (const char* key : kS6Keys) keys.move({{key, key}}, s6_options);
    json shared_options = keys.take("mixer_options", json::object());
    if (!shared_options.is_object()) invalid_config_value("mixer_options", shared_options, "must be a JSON object");
    // Format 1 gave the Mamba-1 keys to mixer/s6 layers and "mixer_options" to every layer. In a
    // stack of several mixers, mixer/s6 layers take the mixer_options that are Mamba-1 keys and
    // the other mixers the rest (which they check); in a pure Mamba-1 stack every option goes
    // to mixer/s6, which refuses an unknown one.
    const json names = keys.take("mixer", "s6");
    const bool mixed = names.is_array() &&
                       std::any_of(names.begin(), names.end(), [](const json& name) { return name != "s6"; });
    auto choice = [&](const json& name) {
      if (!name.is_string() || name.get<std::string>().empty()) {
        invalid_config_value("mixer", root["mixer"], "must be a mixer name or a non-empty list of names");
      }
      // In a mixed stack the shared options split: the Mamba-1 keys to mixer/s6, the rest to
      // the other mixers.
      json options = mixed ? json::object() : shared_options;
      if (mixed) {
        for (const auto& item : shared_options.items()) {
          const std::string& key = item.key();
          const bool s6_key = std::any_of(std::begin(kS6Keys), std::end(kS6Keys),
                                          [&](const char* known) { return key == known; });
          if (s6_key == (name == "s6")) options[key] = item.value();
        }
      }
      if (name == "s6") options.update(s6_options);
      return json{{"name", name}, {"options", options}};
    };
    if (names.is_array()) {
      if (names.empty()) invalid_config_value("mixer", names, "must be a mixer name or a non-empty list of names");
      const std::int64_t n_layer = root.value("n_layer", std::int64_t{24});
      if (names.size() != 1 && static_cast<std::int64_t>(names.size()) != n_layer) {
        invalid_config_value("mixer", names,
             std::to_string(names.size()) + " names: give one mixer for all layers or exactly n_layer of them");
      }
      native["mixer"] = choice(names[0]);
      json layers = json::object();
      for (std::size_t layer = 1; layer < names.size(); ++layer) layers[std::to_string(layer)] = choice(names[layer]);
      if (!layers.empty()) native["layers"] = layers;
    } else {
      native["mixer"] = choice(names);
    }
    keys.reject_unread("mambakit format 1");
    return sdk::util::write_config(native, out);
  });
}

}  // namespace mambakit::mixer_s6
