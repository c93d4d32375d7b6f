#pragma once
/// \file
/// Model configuration: the backbone the host owns (with each layer's mixer named, its options
/// the mixer's own) and per-task configs that extend it, validated, with a JSON round trip;
/// other formats (Hugging Face config.json, ...) arrive through the config adapters plugins
/// register.

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <variant>
#include <vector>

namespace mambakit {

class PluginHost;

/// How a sequence's hidden states become one vector.
enum class Pooling { kLast, kMean, kMax, kNone /* per token, features only */ };

/// "last", "mean", "max", "none".
const char* pooling_name(Pooling pooling);

/// A component chosen by name, with its own options: a JSON object's text, which the host
/// passes to the component's factory without reading it (the component defaults, validates
/// and documents its options).
struct ComponentChoice {
  std::string name;
  std::string options = "{}";

  friend bool operator==(const ComponentChoice&, const ComponentChoice&) = default;
};

/// The backbone: what the host owns of a model (embedding, blocks of (RMSNorm, mixer), final
/// RMSNorm). Which mixer each layer runs, and with which options, is named here; what the
/// options mean is the mixer's.
struct BackboneConfig {
  std::int64_t d_model = 768;
  std::int64_t n_layer = 24;
  double norm_eps = 1e-5;
  bool residual_in_fp32 = true;
  std::int64_t vocab_size = 50280;
  std::int64_t pad_vocab_size_multiple = 8;
  /// The mixer of every layer not in layer_mixers.
  ComponentChoice mixer;
  /// Per-layer overrides of `mixer`, by layer index (hybrid stacks).
  std::map<std::int64_t, ComponentChoice> layer_mixers;

  /// vocab_size rounded up to a multiple of pad_vocab_size_multiple: the embedding's rows.
  [[nodiscard]] std::int64_t padded_vocab_size() const;
  /// The mixer of layer `layer`.
  [[nodiscard]] const ComponentChoice& mixer_of_layer(std::int64_t layer) const;
};

/// Causal language model: the seed's MambaLMConfig.
struct LmConfig : BackboneConfig {
  bool tie_embeddings = true;
};

/// Sequence classification: the seed's MambaClassificationConfig.
struct ClassificationConfig : BackboneConfig {
  std::int64_t num_labels = 2;
  Pooling pooling = Pooling::kLast;
  /// Dropout on the hidden states the head sees, in training only (accumulate_gradients()).
  double dropout = 0.0;
  std::vector<std::string> labels;  ///< optional names of the labels
};

/// Feature extraction (embeddings): pooled or per-token hidden states.
struct FeatureExtractionConfig : BackboneConfig {
  Pooling pooling = Pooling::kMean;
};

/// Backward-compatible name of the causal-LM config.
using MambaConfig = LmConfig;

/// Any task model's config.
using ModelConfig = std::variant<LmConfig, ClassificationConfig, FeatureExtractionConfig>;

/// The backbone part of any model config.
const BackboneConfig& backbone_of(const ModelConfig& config);
BackboneConfig& backbone_of(ModelConfig& config);

/// "causal_lm", "sequence_classification" or "feature_extraction".
const char* task_name(const ModelConfig& config);

/// The head component that serves the config's task: "lm", "classification" or "features".
const char* head_name(const ModelConfig& config);

/// Throws mambakit::Error naming the key and value of the first invalid setting; `source`
/// (a file name, or a description) starts the message.
void validate(const ModelConfig& config, const std::string& source);

/// The native format's "format" value.
inline constexpr const char* kNativeConfigFormat = "mambakit-2";

/// Parses a model config: mambakit's native format ("format": "mambakit-2", see
/// docs/CONFIG.md; unknown keys are errors), or any other format that a config adapter
/// registered with `host` reads (a Hugging Face config.json, mambakit's format 1, ...): the
/// highest-scoring adapter translates it to the native format first. Validates the backbone;
/// each component validates its own options when the model is created.
ModelConfig parse_model_config(const std::string& json_text, const std::string& source, const PluginHost& host);

/// Reads and parses a config file (see parse_model_config()).
ModelConfig load_model_config(const std::filesystem::path& file, const PluginHost& host);

/// The native JSON form of `config`; parse_model_config() of it gives `config` back.
std::string to_json(const ModelConfig& config);

/// The JSON object a component factory of layer `layer` receives: the host keys
/// (sdk::kMixerHostKeys) and the layer's mixer options. Throws when an option takes a host key.
std::string mixer_config_json(const ModelConfig& config, std::int64_t layer);
std::string head_config_json(const ModelConfig& config);

}  // namespace mambakit
