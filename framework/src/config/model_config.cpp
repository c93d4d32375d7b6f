// mambakit's own config format: validation, JSON round trip, and the configs handed to
// component factories.

#include <fmt/format.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "hf_config.hpp"
#include "json_fields.hpp"
#include "mambakit/config.hpp"
#include "mambakit/error.hpp"

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

std::int64_t SsmConfig::padded_vocab_size() const {
  const std::int64_t multiple = pad_vocab_size_multiple > 0 ? pad_vocab_size_multiple : 1;
  return (vocab_size + multiple - 1) / multiple * multiple;
}

const std::string& SsmConfig::mixer_of_layer(std::int64_t layer) const {
  return mixers.size() == 1 ? mixers.front() : mixers.at(static_cast<std::size_t>(layer));
}

const SsmConfig& ssm_of(const ModelConfig& config) {
  return std::visit([](const auto& typed) -> const SsmConfig& { return typed; }, config);
}

SsmConfig& ssm_of(ModelConfig& config) {
  return std::visit([](auto& typed) -> SsmConfig& { return typed; }, config);
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

void require(bool condition, const std::string& source, const char* key, const std::string& value,
             const char* rule) {
  if (!condition) throw Error(fmt::format("{}: {} = {} is invalid: {}", source, key, value, rule));
}

template <class T>
std::string show(const T& value) {
  return fmt::format("{}", value);
}

}  // namespace

void validate(const ModelConfig& config, const std::string& source) {
  const SsmConfig& ssm = ssm_of(config);
  require(ssm.d_model >= 1, source, "d_model", show(ssm.d_model), "must be >= 1");
  require(ssm.n_layer >= 1, source, "n_layer", show(ssm.n_layer), "must be >= 1");
  require(ssm.d_state >= 1 && ssm.d_state <= 256, source, "d_state", show(ssm.d_state), "must be in [1, 256]");
  require(ssm.d_conv >= 1 && ssm.d_conv <= 16, source, "d_conv", show(ssm.d_conv), "must be in [1, 16]");
  require(ssm.expand >= 1, source, "expand", show(ssm.expand), "must be >= 1");
  require(ssm.dt_rank >= 0, source, "dt_rank", show(ssm.dt_rank), "must be >= 1, or \"auto\"");
  require(ssm.dt_min > 0, source, "dt_min", show(ssm.dt_min), "must be > 0");
  require(ssm.dt_max >= ssm.dt_min, source, "dt_max", show(ssm.dt_max), "must be >= dt_min");
  require(ssm.dt_init == "random" || ssm.dt_init == "constant", source, "dt_init", ssm.dt_init,
          "must be \"random\" or \"constant\"");
  require(ssm.dt_scale > 0, source, "dt_scale", show(ssm.dt_scale), "must be > 0");
  require(ssm.dt_init_floor >= 0, source, "dt_init_floor", show(ssm.dt_init_floor), "must be >= 0");
  require(ssm.norm_eps > 0 && ssm.norm_eps < 1, source, "norm_eps", show(ssm.norm_eps), "must be in (0, 1)");
  require(ssm.vocab_size >= 1, source, "vocab_size", show(ssm.vocab_size), "must be >= 1");
  require(ssm.pad_vocab_size_multiple >= 1, source, "pad_vocab_size_multiple", show(ssm.pad_vocab_size_multiple),
          "must be >= 1");
  require(ssm.mixers.size() == 1 || static_cast<std::int64_t>(ssm.mixers.size()) == ssm.n_layer, source, "mixer",
          show(ssm.mixers.size()) + " names", "give one mixer for all layers or exactly n_layer of them");
  for (const auto& name : ssm.mixers) require(!name.empty(), source, "mixer", "\"\"", "names must not be empty");
  const json options = json::parse(ssm.mixer_options, nullptr, false);
  require(options.is_object(), source, "mixer_options", ssm.mixer_options, "must be a JSON object");
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

void ssm_to_json(const SsmConfig& ssm, json& out) {
  out["d_model"] = ssm.d_model;
  out["n_layer"] = ssm.n_layer;
  out["d_state"] = ssm.d_state;
  out["d_conv"] = ssm.d_conv;
  out["expand"] = ssm.expand;
  if (ssm.dt_rank == 0) {
    out["dt_rank"] = "auto";
  } else {
    out["dt_rank"] = ssm.dt_rank;
  }
  out["dt_min"] = ssm.dt_min;
  out["dt_max"] = ssm.dt_max;
  out["dt_init"] = ssm.dt_init;
  out["dt_scale"] = ssm.dt_scale;
  out["dt_init_floor"] = ssm.dt_init_floor;
  out["conv_bias"] = ssm.conv_bias;
  out["bias"] = ssm.bias;
  out["norm_eps"] = ssm.norm_eps;
  out["residual_in_fp32"] = ssm.residual_in_fp32;
  out["vocab_size"] = ssm.vocab_size;
  out["pad_vocab_size_multiple"] = ssm.pad_vocab_size_multiple;
  if (ssm.mixers.size() == 1) {
    out["mixer"] = ssm.mixers.front();
  } else {
    out["mixer"] = ssm.mixers;
  }
  out["mixer_options"] = json::parse(ssm.mixer_options);
}

void ssm_from_json(config_json::Fields& fields, SsmConfig& ssm) {
  fields.read("d_model", ssm.d_model);
  fields.read("n_layer", ssm.n_layer);
  fields.read("d_state", ssm.d_state);
  fields.read("d_conv", ssm.d_conv);
  fields.read("expand", ssm.expand);
  fields.read_rank("dt_rank", ssm.dt_rank);
  fields.read("dt_min", ssm.dt_min);
  fields.read("dt_max", ssm.dt_max);
  fields.read("dt_init", ssm.dt_init);
  fields.read("dt_scale", ssm.dt_scale);
  fields.read("dt_init_floor", ssm.dt_init_floor);
  fields.read("conv_bias", ssm.conv_bias);
  fields.read("bias", ssm.bias);
  fields.read("norm_eps", ssm.norm_eps);
  fields.read("residual_in_fp32", ssm.residual_in_fp32);
  fields.read("vocab_size", ssm.vocab_size);
  fields.read("pad_vocab_size_multiple", ssm.pad_vocab_size_multiple);
  fields.read_names("mixer", ssm.mixers);
  fields.read_object_text("mixer_options", ssm.mixer_options);
}

Pooling parse_pooling(const std::string& text, const std::string& source) {
  if (text == "last") return Pooling::kLast;
  if (text == "mean") return Pooling::kMean;
  if (text == "max") return Pooling::kMax;
  if (text == "none") return Pooling::kNone;
  throw Error(fmt::format("{}: pooling = \"{}\" is invalid: must be last, mean, max or none", source, text));
}

ModelConfig parse_own_format(const json& root, const std::string& source) {
  config_json::Fields fields(root, source);
  std::string task = "causal_lm";
  fields.read("task", task);
  ModelConfig config;
  if (task == "causal_lm") {
    LmConfig lm;
    ssm_from_json(fields, lm);
    fields.read("tie_embeddings", lm.tie_embeddings);
    config = lm;
  } else if (task == "sequence_classification") {
    ClassificationConfig classification;
    ssm_from_json(fields, classification);
    fields.read("num_labels", classification.num_labels);
    std::string pooling = pooling_name(classification.pooling);
    fields.read("pooling", pooling);
    classification.pooling = parse_pooling(pooling, source);
    fields.read("dropout", classification.dropout);
    fields.read_names("labels", classification.labels);
    config = classification;
  } else if (task == "feature_extraction") {
    FeatureExtractionConfig features;
    ssm_from_json(fields, features);
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

}  // namespace

ModelConfig parse_model_config(const std::string& json_text, const std::string& source) {
  json root = json::parse(json_text, nullptr, false);
  if (root.is_discarded() || !root.is_object()) {
    throw Error(fmt::format("{}: not a JSON object", source));
  }
  ModelConfig config = root.contains("model_type") ? ModelConfig(parse_hf_config(root, source))
                                                   : parse_own_format(root, source);
  validate(config, source);
  return config;
}

ModelConfig load_model_config(const std::filesystem::path& file) {
  std::ifstream stream(file, std::ios::binary);
  if (!stream) throw Error(fmt::format("{}: cannot open the config file", file.string()));
  std::stringstream text;
  text << stream.rdbuf();
  return parse_model_config(text.str(), file.string());
}

std::string to_json(const ModelConfig& config) {
  json out = json::object();
  out["task"] = task_name(config);
  ssm_to_json(ssm_of(config), out);
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
  const SsmConfig& ssm = ssm_of(config);
  json out = json::parse(ssm.mixer_options);
  out["d_model"] = ssm.d_model;
  out["n_layer"] = ssm.n_layer;
  out["layer_index"] = layer;
  out["d_state"] = ssm.d_state;
  out["d_conv"] = ssm.d_conv;
  out["expand"] = ssm.expand;
  out["dt_rank"] = ssm.resolved_dt_rank();
  out["conv_bias"] = ssm.conv_bias;
  out["bias"] = ssm.bias;
  out["dt_min"] = ssm.dt_min;
  out["dt_max"] = ssm.dt_max;
  out["dt_init"] = ssm.dt_init;
  out["dt_init_floor"] = ssm.dt_init_floor;
  out["dt_scale"] = ssm.dt_scale;
  out["norm_eps"] = ssm.norm_eps;
  return out.dump();
}

std::string head_config_json(const ModelConfig& config) {
  const SsmConfig& ssm = ssm_of(config);
  json out = json::object();
  out["d_model"] = ssm.d_model;
  out["vocab_size"] = ssm.padded_vocab_size();
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
