#include "s6_config_adapters.hpp"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>
#include <string>

#include "mambakit/sdk/guard.hpp"

namespace mambakit::mixer_s6 {

namespace {

using nlohmann::json;

constexpr const char* kNativeFormat = "mambakit-2";

json parse_object(const char* text) {
  json root = json::parse(text != nullptr ? text : "", nullptr, false);
  if (root.is_discarded() || !root.is_object()) throw std::invalid_argument("the config is not a JSON object");
  return root;
}

[[noreturn]] void fail(const std::string& key, const json& value, const std::string& rule) {
  throw std::invalid_argument(key + " = " + value.dump() + " is invalid: " + rule);
}

/// Moves the keys of `root` named in `renames` (from -> to) into `out`, marking them read.
void move_keys(const json& root, std::initializer_list<std::pair<const char*, const char*>> renames, json& out,
               std::set<std::string>& read) {
  for (const auto& [from, to] : renames) {
    read.insert(from);
    const auto found = root.find(from);
    if (found != root.end()) out[to] = *found;
  }
}

void reject_unread(const json& root, const std::set<std::string>& read, const char* format) {
  for (const auto& [key, value] : root.items()) {
    if (read.count(key) == 0) {
      throw std::invalid_argument(std::string("unknown key \"") + key + "\" (value " + value.dump() + ") in a " +
                                  format + " config");
    }
  }
}

sdk::Status write(const json& native, sdk::TextSink* out) {
  const std::string text = native.dump();
  out->append(text.data(), text.size());
  return sdk::Status::success();
}

/// Runs `body`, turning std::invalid_argument into kInvalidArgument.
template <class Body>
sdk::Status translating(Body&& body) noexcept {
  return sdk::guard([&]() -> sdk::Status {
    try {
      return body();
    } catch (const std::invalid_argument& error) {
      return sdk::Status::error(sdk::StatusCode::kInvalidArgument, "%s", error.what());
    } catch (const nlohmann::json::exception& error) {  // a value of the wrong type
      return sdk::Status::error(sdk::StatusCode::kInvalidArgument, "%s", error.what());
    }
  });
}

/// The Mamba-1 keys of mambakit's first format, which are mixer/s6's options of the same name.
constexpr const char* kS6Keys[] = {"d_state", "d_conv", "expand", "dt_rank", "dt_min", "dt_max",
                                   "dt_init", "dt_scale", "dt_init_floor", "conv_bias", "bias"};

}  // namespace

std::int32_t HfMambaConfigAdapter::score(const char* config_json) const noexcept {
  try {
    const json root = json::parse(config_json != nullptr ? config_json : "", nullptr, false);
    return root.is_object() && root.value("model_type", json()) == "mamba" ? 100 : 0;
  } catch (...) {
    return 0;
  }
}

sdk::Status HfMambaConfigAdapter::translate(const char* config_json, sdk::TextSink* out) const noexcept {
  return translating([&] {
    const json root = parse_object(config_json);
    std::set<std::string> read = {"model_type"};
    json native = {{"format", kNativeFormat}, {"head", "lm"}, {"pad_vocab_size_multiple", 1}};
    move_keys(root,
              {{"hidden_size", "d_model"},
               {"num_hidden_layers", "n_layer"},
               {"layer_norm_epsilon", "norm_eps"},
               {"residual_in_fp32", "residual_in_fp32"},
               {"vocab_size", "vocab_size"},  // Hugging Face stores the padded size
               {"tie_word_embeddings", "tie_embeddings"}},
              native, read);
    json options = json::object();
    move_keys(root,
              {{"state_size", "d_state"},
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
              options, read);
    native["mixer"] = {{"name", "s6"}, {"options", options}};
    // Keys that change nothing in the model mambakit builds: token ids, initialisation,
    // training-time and library settings, PretrainedConfig's generic attributes, and the
    // duplicates some checkpoints carry from mamba_ssm's config. Any other key is an error.
    for (const char* key :
         {"architectures", "auto_map", "bos_token_id", "eos_token_id", "pad_token_id", "sep_token_id",
          "decoder_start_token_id", "use_cache", "torch_dtype", "transformers_version", "_name_or_path", "_commit_hash",
          "initializer_range", "rescale_prenorm_residual", "use_mambapy", "use_associative_scan", "return_dict",
          "output_hidden_states", "output_attentions", "torchscript", "tie_encoder_decoder", "is_encoder_decoder",
          "id2label", "label2id", "problem_type", "chunk_size_feed_forward", "tokenizer_class", "prefix",
          "task_specific_params", "finetuning_task", "max_length", "min_length", "do_sample", "num_beams",
          "temperature", "top_k", "top_p", "dtype", "use_bfloat16", "is_decoder", "pruned_heads", "tf_legacy_loss",
          "add_cross_attention", "cross_attention_hidden_size", "bad_words_ids", "begin_suppress_tokens",
          "diversity_penalty", "early_stopping", "encoder_no_repeat_ngram_size", "exponential_decay_length_penalty",
          "forced_bos_token_id", "forced_eos_token_id", "length_penalty", "no_repeat_ngram_size", "num_beam_groups",
          "num_return_sequences", "output_scores", "remove_invalid_values", "repetition_penalty",
          "return_dict_in_generate", "suppress_tokens", "typical_p", "d_model", "n_layer", "fused_add_norm",
          "pad_vocab_size_multiple", "ssm_cfg"}) {
      read.insert(key);
    }
    read.insert("hidden_act");
    if (root.contains("hidden_act") && root["hidden_act"] != "silu") {
      fail("hidden_act", root["hidden_act"], "mambakit's Mamba-1 mixer uses silu");
    }
    read.insert("rms_norm");
    if (root.contains("rms_norm") && root["rms_norm"] != true) {
      fail("rms_norm", root["rms_norm"], "mambakit's Mamba-1 stacks use RMSNorm");
    }
    read.insert("intermediate_size");
    if (root.contains("intermediate_size")) {
      const json& size = root["intermediate_size"];
      const std::int64_t hidden = root.value("hidden_size", std::int64_t{768});
      const std::int64_t expand = root.value("expand", std::int64_t{2});
      if (!size.is_number_integer() || size.get<std::int64_t>() != expand * hidden) {
        fail("intermediate_size", size,
             "must equal expand * hidden_size = " + std::to_string(expand) + " * " + std::to_string(hidden));
      }
    }
    reject_unread(root, read, "Hugging Face mamba");
    return write(native, out);
  });
}

std::int32_t MambakitV1ConfigAdapter::score(const char* config_json) const noexcept {
  try {
    const json root = json::parse(config_json != nullptr ? config_json : "", nullptr, false);
    return root.is_object() && !root.contains("format") && !root.contains("model_type") ? 10 : 0;
  } catch (...) {
    return 0;
  }
}

sdk::Status MambakitV1ConfigAdapter::translate(const char* config_json, sdk::TextSink* out) const noexcept {
  return translating([&] {
    const json root = parse_object(config_json);
    std::set<std::string> read;
    json native = {{"format", kNativeFormat}};
    move_keys(root,
              {{"d_model", "d_model"},
               {"n_layer", "n_layer"},
               {"norm_eps", "norm_eps"},
               {"residual_in_fp32", "residual_in_fp32"},
               {"vocab_size", "vocab_size"},
               {"pad_vocab_size_multiple", "pad_vocab_size_multiple"},
               {"tie_embeddings", "tie_embeddings"}},
              native, read);
    // Format 1 named a task; its head took the task's keys.
    read.insert("task");
    const json task = root.value("task", json("causal_lm"));
    json head_options = json::object();
    std::string head;
    if (task == "causal_lm") {
      head = "lm";
    } else if (task == "sequence_classification") {
      head = "classification";
      move_keys(root, {{"num_labels", "num_labels"}, {"pooling", "pooling"}, {"dropout", "dropout"}, {"labels", "labels"}},
                head_options, read);
    } else if (task == "feature_extraction") {
      head = "features";
      move_keys(root, {{"pooling", "pooling"}}, head_options, read);
    } else {
      fail("task", task, "must be causal_lm, sequence_classification or feature_extraction");
    }
    native["head"] = {{"name", head}, {"options", head_options}};
    json s6_options = json::object();
    for (const char* key : kS6Keys) move_keys(root, {{key, key}}, s6_options, read);
    read.insert("mixer_options");
    json shared_options = root.value("mixer_options", json::object());
    if (!shared_options.is_object()) fail("mixer_options", shared_options, "must be a JSON object");
    // Format 1 gave the Mamba-1 keys to mixer/s6 layers and "mixer_options" to every layer. In a
    // stack of several mixers, mixer/s6 layers take the mixer_options that are Mamba-1 keys and
    // the other mixers the rest (which they check); in a pure Mamba-1 stack every option goes
    // to mixer/s6, which refuses an unknown one.
    read.insert("mixer");
    const json names = root.value("mixer", json("s6"));
    const bool mixed = names.is_array() &&
                       std::any_of(names.begin(), names.end(), [](const json& name) { return name != "s6"; });
    auto choice = [&](const json& name) {
      if (!name.is_string() || name.get<std::string>().empty()) {
        fail("mixer", root["mixer"], "must be a mixer name or a non-empty list of names");
      }
      // In a mixed stack the shared options split: the Mamba-1 keys to mixer/s6, the rest to
      // the other mixers.
      json options = mixed ? json::object() : shared_options;
      if (mixed) {
        for (const auto& [key, value] : shared_options.items()) {
          const bool s6_key = std::any_of(std::begin(kS6Keys), std::end(kS6Keys),
                                          [&](const char* known) { return key == known; });
          if (s6_key == (name == "s6")) options[key] = value;
        }
      }
      if (name == "s6") options.update(s6_options);
      return json{{"name", name}, {"options", options}};
    };
    if (names.is_array()) {
      if (names.empty()) fail("mixer", names, "must be a mixer name or a non-empty list of names");
      const std::int64_t n_layer = root.value("n_layer", std::int64_t{24});
      if (names.size() != 1 && static_cast<std::int64_t>(names.size()) != n_layer) {
        fail("mixer", names,
             std::to_string(names.size()) + " names: give one mixer for all layers or exactly n_layer of them");
      }
      native["mixer"] = choice(names[0]);
      json layers = json::object();
      for (std::size_t layer = 1; layer < names.size(); ++layer) layers[std::to_string(layer)] = choice(names[layer]);
      if (!layers.empty()) native["layers"] = layers;
    } else {
      native["mixer"] = choice(names);
    }
    reject_unread(root, read, "mambakit format 1");
    return write(native, out);
  });
}

}  // namespace mambakit::mixer_s6
