#pragma once
/// \file
/// Model configuration: what the host owns of a model (embedding, blocks, final norm), with each
/// layer's mixer and the head named and given their own options, which the components
/// themselves default, validate and document. Validated, with a JSON round trip (the native
/// format, docs/CONFIG.md); other formats (Hugging Face config.json, ...) arrive through the
/// config adapters plugins register.

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>

namespace mambakit {

class PluginHost;

/// A component chosen by name, with its own options: a JSON object's text, which the host
/// passes to the component's factory without reading it.
struct ComponentChoice {
  std::string name;
  std::string options = "{}";

  friend bool operator==(const ComponentChoice&, const ComponentChoice&) = default;
};

/// How a checkpoint's linear weights are stored: as int8 with an f32 scale per group of inputs
/// (`mambakit quantize`; sdk/quantized.hpp), or not quantized (an empty scheme).
struct WeightQuantization {
  std::string scheme;           ///< "" or "int8"
  std::int64_t group_size = 0;  ///< inputs per scale: 32, 64 or 128

  friend bool operator==(const WeightQuantization&, const WeightQuantization&) = default;
};

/// The normalisation of the blocks and of the final norm.
enum class NormKind {
  kRms,    ///< RMSNorm: weight
  kLayer,  ///< LayerNorm: weight and bias
};

/// A model: embedding -> blocks -> final norm -> head. A block is h += mixer(norm(h)), then, when
/// the config has an MLP, h += mlp(norm2(h)) (the official mamba_ssm Block). Mirrors the seed's
/// config hierarchy with the task-specific parts moved into the head's options.
struct ModelConfig {
  std::int64_t d_model = 768;
  std::int64_t n_layer = 24;
  double norm_eps = 1e-5;
  NormKind norm = NormKind::kRms;
  bool residual_in_fp32 = true;
  std::int64_t vocab_size = 50280;
  std::int64_t pad_vocab_size_multiple = 8;
  /// Whether a head that projects to the vocabulary shares the embedding (head/lm reads it).
  bool tie_embeddings = true;
  /// The mixer of every layer not in layer_mixers.
  ComponentChoice mixer;
  /// Per-layer overrides of `mixer`, by layer index (hybrid stacks).
  std::map<std::int64_t, ComponentChoice> layer_mixers;
  /// The second sub-block of every block (a component of the mixer interface that declares no
  /// state, e.g. a gated MLP), or none (an empty name).
  ComponentChoice mlp{"", "{}"};
  /// The head: what the model outputs and, through its declared objective, how it trains.
  ComponentChoice head;
  /// How the checkpoint beside this config stores its linear weights (JSON "quantization").
  WeightQuantization quantization;
  /// Where the config came from (a file, or a description), which starts every error message
  /// about it. Not part of its JSON.
  std::string source = "model config";

  /// vocab_size rounded up to a multiple of pad_vocab_size_multiple: the embedding's rows.
  [[nodiscard]] std::int64_t padded_vocab_size() const;
  /// The mixer of layer `layer`.
  [[nodiscard]] const ComponentChoice& mixer_of_layer(std::int64_t layer) const;
};

/// Backward-compatible name of the model config (the seed's MambaConfig).
using MambaConfig = ModelConfig;

/// Limits validate() enforces, far above any published model, so that a damaged config is
/// refused before its model is allocated (docs/RELIABILITY.md).
inline constexpr std::int64_t kMaxLayers = 1024;
inline constexpr std::int64_t kMaxModelWidth = 65536;       ///< d_model
inline constexpr std::int64_t kMaxVocabSize = 16'777'216;  ///< 2^24 token ids

/// Throws mambakit::Error naming config.source, the key and the value of the first invalid
/// setting of the host's own. Model::create() calls it, once per model; each component then
/// validates its own options.
void validate(const ModelConfig& config);

/// The native format's "format" value.
inline constexpr const char* kNativeConfigFormat = "mambakit-2";

/// Parses a model config: mambakit's native format ("format": "mambakit-2", see
/// docs/CONFIG.md; unknown keys are errors), or any other format that a config adapter
/// registered with `host` reads (a Hugging Face config.json, mambakit's format 1, ...): the
/// highest-scoring adapter translates it to the native format first. Checks the keys and their
/// types; the values are validated when a model is created from it (validate()), the
/// components' options by the components themselves. `source` becomes the config's source.
ModelConfig parse_model_config(const std::string& json_text, const std::string& source, const PluginHost& host);

/// Reads and parses a config file (see parse_model_config()).
ModelConfig load_model_config(const std::filesystem::path& file, const PluginHost& host);

/// The native JSON form of `config`; parse_model_config() of it gives `config` back.
std::string to_json(const ModelConfig& config);

/// The JSON object the factory of layer `layer`'s mixer receives: the host keys
/// (sdk::kMixerHostKeys) and the layer's options. Throws when an option takes a host key.
std::string mixer_config_json(const ModelConfig& config, std::int64_t layer);
/// The JSON object the factory of layer `layer`'s MLP receives, as for a mixer.
std::string mlp_config_json(const ModelConfig& config, std::int64_t layer);
/// The JSON object the head's factory receives: the host keys (sdk::kHeadHostKeys) and the
/// head's options. Throws when an option takes a host key.
std::string head_config_json(const ModelConfig& config);

}  // namespace mambakit
