// mambakit's native config format: validation, JSON round trip, other formats through the
// plugins' config adapters, and the configs handed to component factories.

#include <fmt/format.h>

#include <fmt/ranges.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>

#include "json_fields.hpp"
#include "python_json.hpp"
#include "mambakit/config.hpp"
#include "mambakit/error.hpp"
#include "mambakit/input_limits.hpp"
#include "mambakit/sdk/quantized.hpp"
#include "mambakit/plugin_host.hpp"
#include "mambakit/sdk/registrar.hpp"

namespace mambakit {

using nlohmann::json;

std::int64_t ModelConfig::padded_vocab_size() const {
  const std::int64_t multiple = pad_vocab_size_multiple > 0 ? pad_vocab_size_multiple : 1;
  return (vocab_size + multiple - 1) / multiple * multiple;
}

const ComponentChoice& ModelConfig::mixer_of_layer(std::int64_t layer) const {
  const auto found = layer_mixers.find(layer);
  return found != layer_mixers.end() ? found->second : mixer;
}

namespace {

void require(bool condition, const std::string& source, const std::string& key, const std::string& value,
             std::string_view rule) {
  if (!condition) throw Error(fmt::format("{}: {} = {} is invalid: {}", source, key, value, rule));
}

template <class T>
std::string show(const T& value) {
  return fmt::format("{}", value);
}

void validate_choice(const ComponentChoice& choice, const std::string& source, const std::string& key,
                     const char* kind) {
  if (choice.name.empty()) {
    throw Error(fmt::format("{}: {} names no {} (`mambakit plugins` lists them)", source, key, kind));
  }
  const json options = json::parse(choice.options, nullptr, false);
  require(options.is_object(), source, key + ".options", choice.options, "must be a JSON object");
}

}  // namespace

void validate(const ModelConfig& config) {
  const std::string& source = config.source;
  require(config.d_model >= 1 && config.d_model <= kMaxModelWidth, source, "d_model", show(config.d_model),
          fmt::format("must be in [1, {}]", kMaxModelWidth));
  require(config.n_layer >= 1 && config.n_layer <= kMaxLayers, source, "n_layer", show(config.n_layer),
          fmt::format("must be in [1, {}]", kMaxLayers));
  require(config.norm_eps > 0 && config.norm_eps < 1, source, "norm_eps", show(config.norm_eps), "must be in (0, 1)");
  require(config.vocab_size >= 1 && config.vocab_size <= kMaxVocabSize, source, "vocab_size", show(config.vocab_size),
          fmt::format("must be in [1, {}]", kMaxVocabSize));
  require(config.pad_vocab_size_multiple >= 1 && config.pad_vocab_size_multiple <= 4096, source,
          "pad_vocab_size_multiple", show(config.pad_vocab_size_multiple), "must be in [1, 4096]");
  validate_choice(config.mixer, source, "mixer", "mixer");
  for (const auto& [layer, choice] : config.layer_mixers) {
    const std::string key = fmt::format("layers.{}", layer);
    require(layer >= 0 && layer < config.n_layer, source, key, choice.name, "the layer index must be in [0, n_layer)");
    validate_choice(choice, source, key, "mixer");
  }
  if (!config.mlp.name.empty()) validate_choice(config.mlp, source, "mlp", "MLP");
  validate_choice(config.head, source, "head", "head");
  const WeightQuantization& quantization = config.quantization;
  if (!quantization.scheme.empty()) {
    require(quantization.scheme == "int8", source, "quantization.scheme", quantization.scheme,
            "this version reads \"int8\" (or no \"quantization\")");
    require(sdk::valid_quant_group_size(quantization.group_size), source, "quantization.group_size",
            show(quantization.group_size), "must be 32, 64 or 128");
  }
}

namespace {

json choice_to_json(const ComponentChoice& choice) {
  return json{{"name", choice.name}, {"options", json::parse(choice.options)}};
}

/// A component given as a name, or as {"name": NAME, "options": {...}}.
ComponentChoice choice_from_json(const json& item, const std::string& source, const std::string& key) {
  ComponentChoice choice;
  if (item.is_string()) {
    choice.name = item.get<std::string>();
    return choice;
  }
  if (!item.is_object()) {
    throw Error(fmt::format("{}: {} = {} is invalid: must be a name or {{\"name\": ..., \"options\": {{...}}}}",
                            source, key, item.dump()));
  }
  config_json::Fields fields(item, fmt::format("{} ({})", source, key));
  fields.read("name", choice.name);
  fields.read_object_text("options", choice.options);
  fields.reject_unread();
  return choice;
}

/// The component under `key`, which must be present.
ComponentChoice required_choice(const json& root, const char* key, const std::string& source, const char* kind) {
  const auto item = root.find(key);
  if (item == root.end()) {
    throw Error(fmt::format("{}: \"{}\" is missing: name the {}, e.g. \"{}\": {{\"name\": NAME, \"options\": "
                            "{{...}}}} (`mambakit plugins` lists them)",
                            source, key, kind, key));
  }
  return choice_from_json(*item, source, key);
}

ModelConfig parse_native(const json& root, const std::string& source) {
  config_json::Fields fields(root, source);
  fields.ignore({"format", "mixer", "layers", "mlp", "head", "quantization"});
  ModelConfig config;
  fields.read("d_model", config.d_model);
  fields.read("n_layer", config.n_layer);
  fields.read("norm_eps", config.norm_eps);
  std::string norm = "rms";
  fields.read("norm", norm);
  require(norm == "rms" || norm == "layer", source, "norm", json(norm).dump(),
          "must be \"rms\" (RMSNorm) or \"layer\" (LayerNorm)");
  config.norm = norm == "rms" ? NormKind::kRms : NormKind::kLayer;
  fields.read("residual_in_fp32", config.residual_in_fp32);
  fields.read("vocab_size", config.vocab_size);
  fields.read("pad_vocab_size_multiple", config.pad_vocab_size_multiple);
  fields.read("tie_embeddings", config.tie_embeddings);
  config.mixer = required_choice(root, "mixer", source, "mixer of every layer");
  config.head = required_choice(root, "head", source, "head");
  const auto mlp = root.find("mlp");
  if (mlp != root.end()) config.mlp = choice_from_json(*mlp, source, "mlp");
  const auto layers = root.find("layers");
  if (layers != root.end()) {
    if (!layers->is_object()) {
      throw Error(fmt::format("{}: layers = {} is invalid: must be an object from layer index to mixer", source,
                              layers->dump()));
    }
    for (const auto& [index_text, item] : layers->items()) {
      const std::string key = fmt::format("layers.{}", index_text);
      const bool is_index = !index_text.empty() && index_text.size() <= 9 &&
                            std::all_of(index_text.begin(), index_text.end(), [](char c) { return c >= '0' && c <= '9'; });
      require(is_index, source, key, item.dump(), "keys of \"layers\" are layer indices (\"0\", \"1\", ...)");
      config.layer_mixers[std::stoll(index_text)] = choice_from_json(item, source, key);
    }
  }
  const auto quantization = root.find("quantization");
  if (quantization != root.end()) {
    if (!quantization->is_object()) {
      throw Error(fmt::format("{}: quantization = {} is invalid: must be {{\"scheme\": \"int8\", \"group_size\": "
                              "N}}",
                              source, quantization->dump()));
    }
    config_json::Fields quantization_fields(*quantization, fmt::format("{} (quantization)", source));
    quantization_fields.read("scheme", config.quantization.scheme);
    quantization_fields.read("group_size", config.quantization.group_size);
    quantization_fields.reject_unread();
    if (config.quantization.scheme.empty()) {
      throw Error(fmt::format("{}: quantization.scheme is missing: name the scheme, \"int8\"", source));
    }
  }
  fields.reject_unread();
  return config;
}

/// Collects what an adapter writes.
class StringSink final : public sdk::TextSink {
 public:
  void append(const char* text, std::size_t size) noexcept override {
    try {
      text_.append(text, size);
    } catch (...) {
      failed_ = true;
    }
  }
  [[nodiscard]] const std::string& text() const {
    if (failed_) throw Error("out of memory while translating a config");
    return text_;
  }

 private:
  std::string text_;
  bool failed_ = false;
};

/// The native translation of a config in another format, by the highest-scoring adapter; its
/// name is written to `adapter_name`.
std::string translate(const std::string& json_text, const json& root, const std::string& source,
                      const PluginHost& host, std::string& adapter_name) {
  ConfigAdapterPtr best;
  std::int32_t best_score = 0;
  const std::vector<std::string> names = host.names(ComponentKind::kConfigAdapter);
  for (const auto& name : names) {
    ConfigAdapterPtr adapter = host.create_config_adapter(name);
    const std::int32_t score = adapter->score(json_text.c_str());
    if (score > best_score) {
      best_score = score;
      best = std::move(adapter);
      adapter_name = name;
    }
  }
  if (best == nullptr) {
    const auto model_type = root.find("model_type");
    throw Error(fmt::format(
        "{}: not a native config (\"format\": \"{}\"), and no loaded config adapter reads it{} (adapters loaded: "
        "{}; `mambakit plugins` lists them)",
        source, kNativeConfigFormat,
        model_type != root.end() ? fmt::format(" (model_type = {} is not supported)", model_type->dump()) : "",
        names.empty() ? std::string("none") : fmt::format("{}", fmt::join(names, ", "))));
  }
  StringSink sink;
  const sdk::Status status = best->translate(json_text.c_str(), &sink);
  if (!status.ok()) throw Error(fmt::format("{}: {}", source, status.message));
  return sink.text();
}

}  // namespace

ModelConfig parse_model_config(const std::string& text, const std::string& source, const PluginHost& host) {
  check_json_depth(text, source);
  const std::string json_text = config::with_python_infinities(text, source);
  const json root = json::parse(json_text, nullptr, false);
  if (root.is_discarded()) throw Error(fmt::format("{}: not valid JSON", source));
  if (!root.is_object()) throw Error(fmt::format("{}: not a JSON object but {}", source, root.type_name()));
  ModelConfig config;
  const auto format = root.find("format");
  if (format != root.end()) {
    require(*format == kNativeConfigFormat, source, "format", format->dump(),
            "this version reads \"mambakit-2\" (leave \"format\" out for formats a config adapter reads)");
    config = parse_native(root, source);
    config.source = source;
    return config;
  }
  std::string adapter;
  const std::string native = translate(json_text, root, source, host, adapter);
  const std::string translated_source = fmt::format("{} (read by config/{})", source, adapter);
  const json translated = json::parse(native, nullptr, false);
  if (translated.is_discarded() || !translated.is_object()) {
    throw Error(fmt::format("{}: the adapter wrote no JSON object", translated_source));
  }
  config = parse_native(translated, translated_source);
  config.source = translated_source;
  return config;
}

ModelConfig load_model_config(const std::filesystem::path& file, const PluginHost& host) {
  return parse_model_config(read_limited_file(file, kMaxConfigFileBytes, "config file"), file.string(), host);
}

std::string to_json(const ModelConfig& config) {
  json out = json::object();
  out["format"] = kNativeConfigFormat;
  out["d_model"] = config.d_model;
  out["n_layer"] = config.n_layer;
  out["norm_eps"] = config.norm_eps;
  if (config.norm == NormKind::kLayer) out["norm"] = "layer";
  out["residual_in_fp32"] = config.residual_in_fp32;
  out["vocab_size"] = config.vocab_size;
  out["pad_vocab_size_multiple"] = config.pad_vocab_size_multiple;
  out["tie_embeddings"] = config.tie_embeddings;
  out["mixer"] = choice_to_json(config.mixer);
  if (!config.layer_mixers.empty()) {
    json layers = json::object();
    for (const auto& [layer, choice] : config.layer_mixers) layers[std::to_string(layer)] = choice_to_json(choice);
    out["layers"] = layers;
  }
  if (!config.mlp.name.empty()) out["mlp"] = choice_to_json(config.mlp);
  out["head"] = choice_to_json(config.head);
  if (!config.quantization.scheme.empty()) {
    out["quantization"] = json{{"scheme", config.quantization.scheme}, {"group_size", config.quantization.group_size}};
  }
  return out.dump(2);
}

namespace {

/// The options of `choice` with the host's keys added; throws when an option takes one.
template <std::size_t N>
json with_host_keys(const ComponentChoice& choice, const char* const (&host_keys)[N], const std::string& owner) {
  json out = json::parse(choice.options);
  for (const char* key : host_keys) {
    if (out.contains(key)) {
      throw Error(fmt::format("{}: option \"{}\" is the backbone's; set it at the top of the config", owner, key));
    }
  }
  return out;
}

}  // namespace

namespace {

/// The factory config of a block component of layer `layer`: its options and the mixer host keys.
std::string block_component_json(const ModelConfig& config, const ComponentChoice& choice, std::int64_t layer,
                                 const std::string& owner) {
  json out = with_host_keys(choice, sdk::kMixerHostKeys, owner);
  out["d_model"] = config.d_model;
  out["n_layer"] = config.n_layer;
  out["layer_index"] = layer;
  return out.dump();
}

}  // namespace

std::string mixer_config_json(const ModelConfig& config, std::int64_t layer) {
  const ComponentChoice& mixer = config.mixer_of_layer(layer);
  return block_component_json(config, mixer, layer, fmt::format("layer {} mixer/{}", layer, mixer.name));
}

std::string mlp_config_json(const ModelConfig& config, std::int64_t layer) {
  return block_component_json(config, config.mlp, layer, fmt::format("layer {} mlp/{}", layer, config.mlp.name));
}

std::string head_config_json(const ModelConfig& config) {
  json out = with_host_keys(config.head, sdk::kHeadHostKeys, fmt::format("head/{}", config.head.name));
  out["d_model"] = config.d_model;
  out["vocab_size"] = config.padded_vocab_size();
  out["tie_embeddings"] = config.tie_embeddings;
  return out.dump();
}

}  // namespace mambakit
