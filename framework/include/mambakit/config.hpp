#pragma once
/// \file
/// Model configuration: typed structs mirroring the seed's hierarchy (a base SSM config, and
/// per-task configs that extend it), validated, with a JSON round trip and a reader for Hugging
/// Face `config.json` files (model_type "mamba").

#include <cstdint>
#include <filesystem>
#include <string>
#include <variant>
#include <vector>

namespace mambakit {

/// How a sequence's hidden states become one vector.
enum class Pooling { kLast, kMean, kMax, kNone /* per token, features only */ };

/// "last", "mean", "max", "none".
const char* pooling_name(Pooling pooling);

/// The backbone: embedding, blocks of (RMSNorm, mixer), final RMSNorm. Mirrors the seed's
/// BaseMambaConfig.
struct SsmConfig {
  std::int64_t d_model = 768;
  std::int64_t n_layer = 24;
  std::int64_t d_state = 16;
  std::int64_t d_conv = 4;
  std::int64_t expand = 2;
  std::int64_t dt_rank = 0;  ///< 0 means "auto": ceil(d_model / 16)
  double dt_min = 0.001;
  double dt_max = 0.1;
  std::string dt_init = "random";  ///< "random" or "constant"
  double dt_scale = 1.0;
  double dt_init_floor = 1e-4;
  bool conv_bias = true;
  bool bias = false;
  double norm_eps = 1e-5;
  bool residual_in_fp32 = true;
  std::int64_t vocab_size = 50280;
  std::int64_t pad_vocab_size_multiple = 8;
  /// One mixer name for every layer, or one per layer (hybrid stacks).
  std::vector<std::string> mixers = {"s6"};
  /// Extra keys for the mixers, as a JSON object's text.
  std::string mixer_options = "{}";

  [[nodiscard]] std::int64_t d_inner() const { return expand * d_model; }
  [[nodiscard]] std::int64_t resolved_dt_rank() const { return dt_rank > 0 ? dt_rank : (d_model + 15) / 16; }
  /// vocab_size rounded up to a multiple of pad_vocab_size_multiple: the embedding's rows.
  [[nodiscard]] std::int64_t padded_vocab_size() const;
  /// The mixer of layer `layer`.
  [[nodiscard]] const std::string& mixer_of_layer(std::int64_t layer) const;
};

/// Causal language model: the seed's MambaLMConfig.
struct LmConfig : SsmConfig {
  bool tie_embeddings = true;
};

/// Sequence classification: the seed's MambaClassificationConfig.
struct ClassificationConfig : SsmConfig {
  std::int64_t num_labels = 2;
  Pooling pooling = Pooling::kLast;
  /// Dropout on the hidden states the head sees, in training only (accumulate_gradients()).
  double dropout = 0.0;
  std::vector<std::string> labels;  ///< optional names of the labels
};

/// Feature extraction (embeddings): pooled or per-token hidden states.
struct FeatureExtractionConfig : SsmConfig {
  Pooling pooling = Pooling::kMean;
};

/// Backward-compatible name of the causal-LM config.
using MambaConfig = LmConfig;

/// Any task model's config.
using ModelConfig = std::variant<LmConfig, ClassificationConfig, FeatureExtractionConfig>;

/// The backbone part of any model config.
const SsmConfig& ssm_of(const ModelConfig& config);
SsmConfig& ssm_of(ModelConfig& config);

/// "causal_lm", "sequence_classification" or "feature_extraction".
const char* task_name(const ModelConfig& config);

/// The head component that serves the config's task: "lm", "classification" or "features".
const char* head_name(const ModelConfig& config);

/// Throws mambakit::Error naming the key and value of the first invalid setting; `source`
/// (a file name, or a description) starts the message.
void validate(const ModelConfig& config, const std::string& source);

/// Parses mambakit's own JSON format (a "task" key and the fields above; unknown keys are
/// errors) or, when "model_type" is "mamba", a Hugging Face config.json. Validates.
ModelConfig parse_model_config(const std::string& json_text, const std::string& source);

/// Reads and parses a config file (see parse_model_config()).
ModelConfig load_model_config(const std::filesystem::path& file);

/// mambakit's JSON form of `config`; parse_model_config() of it gives `config` back.
std::string to_json(const ModelConfig& config);

/// The JSON object a component factory of layer `layer` receives (see sdk/registrar.hpp).
std::string mixer_config_json(const ModelConfig& config, std::int64_t layer);
std::string head_config_json(const ModelConfig& config);

}  // namespace mambakit
