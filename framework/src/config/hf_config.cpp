#include "hf_config.hpp"

#include <fmt/format.h>

#include "json_fields.hpp"
#include "mambakit/error.hpp"

namespace mambakit {

LmConfig parse_hf_config(const nlohmann::json& root, const std::string& source) {
  config_json::Fields fields(root, source);
  std::string model_type;
  fields.read("model_type", model_type);
  if (model_type != "mamba") {
    throw Error(fmt::format("{}: model_type = \"{}\" is not supported: mambakit reads Hugging Face configs of "
                            "model_type \"mamba\"",
                            source, model_type));
  }
  LmConfig config;
  config.pad_vocab_size_multiple = 1;  // HF stores the padded size as vocab_size
  fields.read("hidden_size", config.d_model);
  fields.read("num_hidden_layers", config.n_layer);
  fields.read("state_size", config.d_state);
  fields.read("conv_kernel", config.d_conv);
  fields.read("expand", config.expand);
  fields.read_rank("time_step_rank", config.dt_rank);
  fields.read("time_step_min", config.dt_min);
  fields.read("time_step_max", config.dt_max);
  fields.read("time_step_init_scheme", config.dt_init);
  fields.read("time_step_scale", config.dt_scale);
  fields.read("time_step_floor", config.dt_init_floor);
  fields.read("use_conv_bias", config.conv_bias);
  fields.read("use_bias", config.bias);
  fields.read("layer_norm_epsilon", config.norm_eps);
  fields.read("residual_in_fp32", config.residual_in_fp32);
  fields.read("vocab_size", config.vocab_size);
  fields.read("tie_word_embeddings", config.tie_embeddings);
  std::int64_t intermediate_size = config.d_inner();
  fields.read("intermediate_size", intermediate_size);
  if (intermediate_size != config.d_inner()) {
    throw Error(fmt::format("{}: intermediate_size = {} is invalid: must equal expand * hidden_size = {} * {}", source,
                            intermediate_size, config.expand, config.d_model));
  }
  return config;
}

}  // namespace mambakit
