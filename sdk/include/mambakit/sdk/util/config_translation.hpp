#pragma once
// Helpers for config adapters (config_adapter.hpp) that translate a published config.json into
// mambakit's native format: renaming keys, refusing unknown ones with a message that names
// them, and turning exceptions into a Status.

#include <nlohmann/json.hpp>

#include <initializer_list>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>

#include "mambakit/sdk/config_adapter.hpp"
#include "mambakit/sdk/guard.hpp"

namespace mambakit::sdk::util {

/// The native format's name, the value of its "format" key.
inline constexpr const char* kNativeConfigFormat = "mambakit-2";

/// `text` as a JSON object; std::invalid_argument otherwise.
inline nlohmann::json parse_config_object(const char* text) {
  nlohmann::json root = nlohmann::json::parse(text != nullptr ? text : "", nullptr, false);
  if (root.is_discarded() || !root.is_object()) throw std::invalid_argument("the config is not a JSON object");
  return root;
}

/// The score of an adapter: `score` when `text` is a JSON object for which `accepts(root)` is
/// true, 0 otherwise (also for text that is not JSON).
template <class Accepts>
std::int32_t score_config(const char* text, std::int32_t score, Accepts&& accepts) noexcept {
  try {
    const nlohmann::json root = nlohmann::json::parse(text != nullptr ? text : "", nullptr, false);
    return root.is_object() && accepts(root) ? score : 0;
  } catch (...) {
    return 0;
  }
}

/// Throws std::invalid_argument: "KEY = VALUE is invalid: RULE".
[[noreturn]] inline void invalid_config_value(const std::string& key, const nlohmann::json& value,
                                              const std::string& rule) {
  throw std::invalid_argument(key + " = " + value.dump() + " is invalid: " + rule);
}

/// The keys of a config object that an adapter has read; the rest are refused by reject_unread().
class ConfigKeys {
 public:
  explicit ConfigKeys(const nlohmann::json& root) : root_(root) {}

  /// Marks `key` read; returns its value, or `fallback` when absent.
  nlohmann::json take(const char* key, const nlohmann::json& fallback = nullptr) {
    read_.insert(key);
    const auto found = root_.find(key);
    return found == root_.end() ? fallback : *found;
  }
  /// Marks the keys read without using them (keys that change nothing in the model built).
  void ignore(std::initializer_list<const char*> keys) { read_.insert(keys.begin(), keys.end()); }
  /// Copies each present key `from` into out[`to`], marking it read.
  void move(std::initializer_list<std::pair<const char*, const char*>> renames, nlohmann::json& out) {
    for (const auto& [from, to] : renames) {
      read_.insert(from);
      const auto found = root_.find(from);
      if (found != root_.end()) out[to] = *found;
    }
  }
  /// Requires `key`, when present, to equal `value`; `why` ends the message otherwise.
  void require_equal(const char* key, const nlohmann::json& value, const std::string& why) {
    read_.insert(key);
    const auto found = root_.find(key);
    if (found != root_.end() && *found != value) invalid_config_value(key, *found, why);
  }
  /// Throws for the first key not read, naming it, its value and `format`.
  void reject_unread(const char* format) const {
    for (const auto& [key, value] : root_.items()) {
      if (read_.count(key) == 0) {
        throw std::invalid_argument("unknown key \"" + key + "\" (value " + value.dump() + ") in a " + format +
                                    " config");
      }
    }
  }

 private:
  const nlohmann::json& root_;
  std::set<std::string> read_;
};

/// The keys of Hugging Face's PretrainedConfig (and of its generation settings) that change
/// nothing in the model a mixer builds.
inline void ignore_hf_generic_keys(ConfigKeys& keys) {
  keys.ignore({"architectures", "auto_map", "bos_token_id", "eos_token_id", "pad_token_id", "sep_token_id",
               "decoder_start_token_id", "use_cache", "torch_dtype", "transformers_version", "_name_or_path",
               "_commit_hash", "initializer_range", "rescale_prenorm_residual", "return_dict", "output_hidden_states",
               "output_attentions", "torchscript", "tie_encoder_decoder", "is_encoder_decoder", "id2label",
               "label2id", "problem_type", "chunk_size_feed_forward", "tokenizer_class", "prefix",
               "task_specific_params", "finetuning_task", "max_length", "min_length", "do_sample", "num_beams",
               "temperature", "top_k", "top_p", "dtype", "use_bfloat16", "is_decoder", "pruned_heads",
               "tf_legacy_loss", "add_cross_attention", "cross_attention_hidden_size", "bad_words_ids",
               "begin_suppress_tokens", "diversity_penalty", "early_stopping", "encoder_no_repeat_ngram_size",
               "exponential_decay_length_penalty", "forced_bos_token_id", "forced_eos_token_id", "length_penalty",
               "no_repeat_ngram_size", "num_beam_groups", "num_return_sequences", "output_scores",
               "remove_invalid_values", "repetition_penalty", "return_dict_in_generate", "suppress_tokens",
               "typical_p"});
}

/// Writes `native` to `out`.
inline Status write_config(const nlohmann::json& native, TextSink* out) {
  const std::string text = native.dump();
  out->append(text.data(), text.size());
  return Status::success();
}

/// Runs `body`, turning std::invalid_argument and JSON type errors into kInvalidArgument.
template <class Body>
Status translating_config(Body&& body) noexcept {
  return guard([&]() -> Status {
    try {
      return body();
    } catch (const std::invalid_argument& error) {
      return Status::error(StatusCode::kInvalidArgument, "%s", error.what());
    } catch (const nlohmann::json::exception& error) {  // a value of the wrong type
      return Status::error(StatusCode::kInvalidArgument, "%s", error.what());
    }
  });
}

}  // namespace mambakit::sdk::util
