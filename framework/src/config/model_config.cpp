// mambakit's native config format: validation, JSON round trip, other formats through the
// plugins' config adapters, and the configs handed to component factories.

#include <fmt/format.h>

#include <fmt/ranges.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "json_fields.hpp"
#include "mambakit/config.hpp"
#include "mambakit/error.hpp"
#include "mambakit/plugin_host.hpp"
#include "mambakit/sdk/registrar.hpp"

namespace mambakit {

using nlohmann::json;

const char* pooling_name(Pooling pooling) {
  switch (pooling) {
    case Pooling::kLast: return "last";
    case Pooling::kMean: return "mean";
    case Pooling::kMax: return "max";
    case Pooling::kNone: return "none";
  }
  return "unknown";
}

std::int64_t BackboneConfig::padded_vocab_size() const {
  const std::int64_t multiple = pad_vocab_size_multiple > 0 ? pad_vocab_size_multiple : 1;
  return (vocab_size + multiple - 1) / multiple * multiple;
}

const ComponentChoice& BackboneConfig::mixer_of_layer(std::int64_t layer) const {
  const auto found = layer_mixers.find(layer);
  return found != layer_mixers.end() ? found->second : mixer;
}

const BackboneConfig& backbone_of(const ModelConfig& config) {
  return std::visit([](const auto& typed) -> const BackboneConfig& { return typed; }, config);
}

BackboneConfig& backbone_of(ModelConfig& config) {
  return std::visit([](auto& typed) -> BackboneConfig& { return typed; }, config);
}

const char* task_name(const ModelConfig& config) {
  switch (config.index()) {
    case 0: return "causal_lm";
    case 1: return "sequence_classification";
    default: return "feature_extraction";
  }
}

const char* head_name(const ModelConfig& config) {
  switch (config.index()) {
    case 0: return "lm";
    case 1: return "classification";
    default: return "features";
  }
}

namespace {

void require(bool condition, const std::string& source, const std::string& key, const std::string& value,
             const char* rule) {
  if (!condition) throw Error(fmt::format("{}: {} = {} is invalid: {}", source, key, value, rule));
}

template <class T>
std::string show(const T& value) {
  return fmt::format("{}", value);
}

void validate_choice(const ComponentChoice& choice, const std::string& source, const std::string& key) {
  require(!choice.name.empty(), source, key, "\"\"", "name the mixer (e.g. \"mixer\": {\"name\": NAME})");
  const json options = json::parse(choice.options, nullptr, false);
  require(options.is_object(), source, key + ".options", choice.options, "must be a JSON object");
}

}  // namespace

void validate(const ModelConfig& config, const std::string& source) {
  const BackboneConfig& backbone = backbone_of(config);
  require(backbone.d_model >= 1, source, "d_model", show(backbone.d_model), "must be >= 1");
  require(backbone.n_layer >= 1, source, "n_layer", show(backbone.n_layer), "must be >= 1");
  require(backbone.norm_eps > 0 && backbone.norm_eps < 1, source, "norm_eps", show(backbone.norm_eps),
          "must be in (0, 1)");
  require(backbone.vocab_size >= 1, source, "vocab_size", show(backbone.vocab_size), "must be >= 1");
  require(backbone.pad_vocab_size_multiple >= 1, source, "pad_vocab_size_multiple",
          show(backbone.pad_vocab_size_multiple), "must be >= 1");
  validate_choice(backbone.mixer, source, "mixer");
  for (const auto& [layer, choice] : backbone.layer_mixers) {
    const std::string key = fmt::format("layers.{}", layer);
    require(layer >= 0 && layer < backbone.n_layer, source, key, choice.name,
            "the layer index must be in [0, n_layer)");
    validate_choice(choice, source, key);
  }
  if (const auto* classification = std::get_if<ClassificationConfig>(&config)) {
    require(classification->num_labels >= 1, source, "num_labels", show(classification->num_labels), "must be >= 1");
    require(classification->pooling != Pooling::kNone, source, "pooling", "none",
            "classification needs last, mean or max");
    require(classification->dropout >= 0 && classification->dropout < 1, source, "dropout",
            show(classification->dropout), "must be in [0, 1)");
    require(classification->labels.empty() ||
                static_cast<std::int64_t>(classification->labels.size()) == classification->num_labels,
            source, "labels", show(classification->labels.size()) + " names", "must name every label or none");
  }
}

namespace {

json choice_to_json(const ComponentChoice& choice) {
  return json{{"name", choice.name}, {"options", json::parse(choice.options)}};
}

/// A mixer given as a name, or as {"name": NAME, "options": {...}}.
ComponentChoice choice_from_json(const json& item, const std::string& source, const std::string& key) {
  ComponentChoice choice;
  if (item.is_string()) {
    choice.name = item.get<std::string>();
    return choice;
  }
  if (!item.is_object()) {
    throw Error(fmt::format("{}: {} = {} is invalid: must be a mixer name or {{\"name\": ..., \"options\": {{...}}}}",
                            source, key, item.dump()));
  }
  config_json::Fields fields(item, fmt::format("{} ({})", source, key));
  fields.read("name", choice.name);
  fields.read_object_text("options", choice.options);
  fields.reject_unread();
  return choice;
}

void backbone_to_json(const BackboneConfig& backbone, json& out) {
  out["d_model"] = backbone.d_model;
  out["n_layer"] = backbone.n_layer;
  out["norm_eps"] = backbone.norm_eps;
  out["residual_in_fp32"] = backbone.residual_in_fp32;
  out["vocab_size"] = backbone.vocab_size;
  out["pad_vocab_size_multiple"] = backbone.pad_vocab_size_multiple;
  out["mixer"] = choice_to_json(backbone.mixer);
  if (!backbone.layer_mixers.empty()) {
    json layers = json::object();
    for (const auto& [layer, choice] : backbone.layer_mixers) layers[std::to_string(layer)] = choice_to_json(choice);
    out["layers"] = layers;
  }
}

void backbone_from_json(const json& root, config_json::Fields& fields, BackboneConfig& backbone,
                        const std::string& source) {
  fields.read("d_model", backbone.d_model);
  fields.read("n_layer", backbone.n_layer);
  fields.read("norm_eps", backbone.norm_eps);
  fields.read("residual_in_fp32", backbone.residual_in_fp32);
  fields.read("vocab_size", backbone.vocab_size);
  fields.read("pad_vocab_size_multiple", backbone.pad_vocab_size_multiple);
  fields.ignore({"mixer", "layers"});
  const auto mixer = root.find("mixer");
  if (mixer == root.end()) {
    throw Error(fmt::format("{}: \"mixer\" is missing: name the mixer of every layer, e.g. \"mixer\": "
                            "{{\"name\": NAME, \"options\": {{...}}}} (`mambakit plugins` lists the mixers)",
                            source));
  }
  backbone.mixer = choice_from_json(*mixer, source, "mixer");
  const auto layers = root.find("layers");
  if (layers != root.end()) {
    if (!layers->is_object()) {
      throw Error(fmt::format("{}: layers = {} is invalid: must be an object from layer index to mixer", source,
                              layers->dump()));
    }
    for (const auto& [index_text, item] : layers->items()) {
      const std::string key = fmt::format("layers.{}", index_text);
      std::int64_t layer = -1;
      const bool is_index = !index_text.empty() && index_text.size() <= 9 &&
                            std::all_of(index_text.begin(), index_text.end(), [](char c) { return c >= '0' && c <= '9'; });
      if (is_index) layer = std::stoll(index_text);
      require(is_index, source, key, item.dump(), "keys of \"layers\" are layer indices (\"0\", \"1\", ...)");
      backbone.layer_mixers[layer] = choice_from_json(item, source, key);
    }
  }
}

Pooling parse_pooling(const std::string& text, const std::string& source) {
  if (text == "last") return Pooling::kLast;
  if (text == "mean") return Pooling::kMean;
  if (text == "max") return Pooling::kMax;
  if (text == "none") return Pooling::kNone;
  throw Error(fmt::format("{}: pooling = \"{}\" is invalid: must be last, mean, max or none", source, text));
}

ModelConfig parse_native(const json& root, const std::string& source) {
  config_json::Fields fields(root, source);
  fields.ignore({"format"});
  std::string task = "causal_lm";
  fields.read("task", task);
  ModelConfig config;
  if (task == "causal_lm") {
    LmConfig lm;
    backbone_from_json(root, fields, lm, source);
    fields.read("tie_embeddings", lm.tie_embeddings);
    config = lm;
  } else if (task == "sequence_classification") {
    ClassificationConfig classification;
    backbone_from_json(root, fields, classification, source);
    fields.read("num_labels", classification.num_labels);
    std::string pooling = pooling_name(classification.pooling);
    fields.read("pooling", pooling);
    classification.pooling = parse_pooling(pooling, source);
    fields.read("dropout", classification.dropout);
    fields.read_names("labels", classification.labels);
    config = classification;
  } else if (task == "feature_extraction") {
    FeatureExtractionConfig features;
    backbone_from_json(root, fields, features, source);
    std::string pooling = pooling_name(features.pooling);
    fields.read("pooling", pooling);
    features.pooling = parse_pooling(pooling, source);
    config = features;
  } else {
    throw Error(fmt::format(
        "{}: task = \"{}\" is invalid: must be causal_lm, sequence_classification or feature_extraction", source,
        task));
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

ModelConfig parse_model_config(const std::string& json_text, const std::string& source, const PluginHost& host) {
  const json root = json::parse(json_text, nullptr, false);
  if (root.is_discarded() || !root.is_object()) {
    throw Error(fmt::format("{}: not a JSON object", source));
  }
  ModelConfig config;
  const auto format = root.find("format");
  if (format != root.end()) {
    require(*format == kNativeConfigFormat, source, "format", format->dump(),
            "this version reads \"mambakit-2\" (leave \"format\" out for formats a config adapter reads)");
    config = parse_native(root, source);
    validate(config, source);
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
  validate(config, translated_source);
  return config;
}

ModelConfig load_model_config(const std::filesystem::path& file, const PluginHost& host) {
  std::ifstream stream(file, std::ios::binary);
  if (!stream) throw Error(fmt::format("{}: cannot open the config file", file.string()));
  std::stringstream text;
  text << stream.rdbuf();
  return parse_model_config(text.str(), file.string(), host);
}

std::string to_json(const ModelConfig& config) {
  json out = json::object();
  out["format"] = kNativeConfigFormat;
  out["task"] = task_name(config);
  backbone_to_json(backbone_of(config), out);
  if (const auto* lm = std::get_if<LmConfig>(&config)) {
    out["tie_embeddings"] = lm->tie_embeddings;
  } else if (const auto* classification = std::get_if<ClassificationConfig>(&config)) {
    out["num_labels"] = classification->num_labels;
    out["pooling"] = pooling_name(classification->pooling);
    out["dropout"] = classification->dropout;
    if (!classification->labels.empty()) out["labels"] = classification->labels;
  } else if (const auto* features = std::get_if<FeatureExtractionConfig>(&config)) {
    out["pooling"] = pooling_name(features->pooling);
  }
  return out.dump(2);
}

std::string mixer_config_json(const ModelConfig& config, std::int64_t layer) {
  const BackboneConfig& backbone = backbone_of(config);
  json out = json::parse(backbone.mixer_of_layer(layer).options);
  for (const char* key : sdk::kMixerHostKeys) {
    if (out.contains(key)) {
      throw Error(fmt::format("layer {} mixer/{}: option \"{}\" is the backbone's; set it at the top of the config",
                              layer, backbone.mixer_of_layer(layer).name, key));
    }
  }
  out["d_model"] = backbone.d_model;
  out["n_layer"] = backbone.n_layer;
  out["layer_index"] = layer;
  return out.dump();
}

std::string head_config_json(const ModelConfig& config) {
  const BackboneConfig& backbone = backbone_of(config);
  json out = json::object();
  out["d_model"] = backbone.d_model;
  out["vocab_size"] = backbone.padded_vocab_size();
  out["tie_embeddings"] = false;
  out["num_labels"] = 0;
  out["pooling"] = "none";
  if (const auto* lm = std::get_if<LmConfig>(&config)) {
    out["tie_embeddings"] = lm->tie_embeddings;
  } else if (const auto* classification = std::get_if<ClassificationConfig>(&config)) {
    out["num_labels"] = classification->num_labels;
    out["pooling"] = pooling_name(classification->pooling);
  } else if (const auto* features = std::get_if<FeatureExtractionConfig>(&config)) {
    out["pooling"] = pooling_name(features->pooling);
  }
  return out.dump();
}

}  // namespace mambakit
