#include "attention_mixer.hpp"

#include <cmath>

#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

#include "mambakit/sdk/options.hpp"
#include "mambakit/sdk/plugin.hpp"
#include "mambakit/sdk/util/mixer_declarations.hpp"
#include "mambakit/sdk/util/typed_params.hpp"

namespace mambakit::mixer_attention {

using sdk::util::declare_param;
using sdk::util::uniform_init;

namespace {

[[noreturn]] void invalid(const char* key, const nlohmann::json& value, const std::string& rule) {
  throw std::invalid_argument(std::string(kComponent) + ": \"" + key + "\" = " + value.dump() + " is invalid: " + rule);
}

/// The options of the official attn_cfg (same names), and the host's d_model, n_layer and
/// layer_index.
AttentionDims read_dims(const char* config_json) {
  const sdk::Options config(config_json, kComponent);
  const nlohmann::json raw = nlohmann::json::parse(config_json, nullptr, false);
  auto require = [](bool ok, const char* key, const auto& value, const std::string& rule) {
    if (!ok) invalid(key, value, rule);
  };
  const std::int64_t one = 1, zero = 0;
  AttentionDims dims;
  dims.d_model = config.integer("d_model", 1);
  dims.n_layer = config.integer("n_layer", 1, &one);
  config.integer("layer_index", 0, &zero);
  dims.heads = config.integer("num_heads", 1);
  dims.heads_kv = config.integer("num_heads_kv", 1, &dims.heads);
  require(dims.heads % dims.heads_kv == 0, "num_heads_kv", dims.heads_kv,
          "must divide num_heads = " + std::to_string(dims.heads));
  if (config.has("head_dim")) {
    dims.head_dim = config.integer("head_dim", 1);
  } else {
    require(dims.d_model % dims.heads == 0, "num_heads", dims.heads,
            "must divide d_model = " + std::to_string(dims.d_model) + " when head_dim is not given");
    dims.head_dim = dims.d_model / dims.heads;
  }
  dims.qkv_bias = config.boolean("qkv_proj_bias", true);
  dims.out_bias = config.boolean("out_proj_bias", true);
  const bool scale_given = config.has("softmax_scale") && !raw.at("softmax_scale").is_null();
  dims.softmax_scale = 1.0 / std::sqrt(static_cast<double>(dims.head_dim));
  if (scale_given) {
    dims.softmax_scale = config.number("softmax_scale", dims.softmax_scale);
    require(std::isfinite(dims.softmax_scale) && dims.softmax_scale > 0, "softmax_scale", dims.softmax_scale,
            "must be null (1 / sqrt(head_dim)) or a number > 0");
  }
  require(config.boolean("causal", true), "causal", false,
          "only causal attention is supported (a non-causal layer cannot decode token by token)");
  dims.rotary_dim = config.integer("rotary_emb_dim", 0, &zero);
  require(dims.rotary_dim % 2 == 0 && dims.rotary_dim <= dims.head_dim, "rotary_emb_dim", dims.rotary_dim,
          "must be even and <= head_dim = " + std::to_string(dims.head_dim));
  dims.rotary_base = config.number("rotary_emb_base", 10000.0);
  require(std::isfinite(dims.rotary_base) && dims.rotary_base > 0, "rotary_emb_base", dims.rotary_base,
          "must be > 0");
  dims.rotary_interleaved = config.boolean("rotary_emb_interleaved", false);
  dims.d_conv = config.integer("d_conv", 0, &zero);
  // As the official: the in_proj's MLP columns are mlp_dim rounded up to a multiple of 256.
  const std::int64_t mlp_dim = config.integer("mlp_dim", 0, &zero);
  dims.mlp_dim = (mlp_dim + 255) / 256 * 256;
  config.reject_unknown();
  return dims;
}

}  // namespace

AttentionMixer::AttentionMixer(const char* config_json) : layer_(read_dims(config_json)) {}

void AttentionMixer::capabilities(sdk::MixerCapabilities* out) const noexcept {
  sdk::util::set_cpu_mixer_capabilities(out);
}

sdk::Status AttentionMixer::param_spec(std::int32_t i, sdk::ParamSpec* out) const noexcept {
  const AttentionDims& d = layer_.dims;
  const AttentionParamIndex& index = layer_.params;
  const std::int64_t D = d.d_model, I = d.d_in_proj(), Q = d.qkv_dim(), F = d.d_out_in(), K = d.d_conv;
  // nn.Linear's and nn.Conv1d's U(+-1/sqrt(fan_in)); the official _init_weights zeroes the
  // Linear biases and rescales out_proj.weight by 1/sqrt(n_residuals_per_layer * n_layer), with
  // n_residuals_per_layer = 1 here (a mixer cannot know whether an MLP sub-block follows).
  if (i == index.in_proj_weight) {
    declare_param(out, "in_proj.weight", {I, D}, uniform_init(1.0 / std::sqrt(D)), true);
    out->linear_weight = true;
  } else if (i == index.in_proj_bias) {
    declare_param(out, "in_proj.bias", {I}, {sdk::InitKind::kZeros}, false);
  } else if (i == index.conv_weight) {
    declare_param(out, "conv1d.weight", {Q, 1, K}, uniform_init(1.0 / std::sqrt(K)), true);
  } else if (i == index.conv_bias) {
    declare_param(out, "conv1d.bias", {Q}, uniform_init(1.0 / std::sqrt(K)), false);
  } else if (i == index.out_proj_weight) {
    declare_param(out, "out_proj.weight", {D, F}, uniform_init(1.0 / std::sqrt(F * static_cast<double>(d.n_layer))),
                  true);
    out->linear_weight = true;
  } else if (i == index.out_proj_bias) {
    declare_param(out, "out_proj.bias", {D}, {sdk::InitKind::kZeros}, false);
  } else {
    return sdk::Status::error(sdk::StatusCode::kInvalidArgument, "%s has %d parameters, not %d", kComponent,
                              index.count, i + 1);
  }
  return sdk::Status::success();
}

sdk::Status AttentionMixer::state_spec(std::int32_t i, std::int64_t batch, sdk::TensorSpec* out) const noexcept {
  const AttentionDims& d = layer_.dims;
  if (i == kKeyCache) {
    sdk::set_tensor_spec(*out, "k_cache", sdk::DType::kF32, {batch, 1, d.heads_kv, d.head_dim});
  } else if (i == kValueCache) {
    sdk::set_tensor_spec(*out, "v_cache", sdk::DType::kF32, {batch, 1, d.heads_kv, d.head_dim});
  } else if (i == kConvState && d.has_conv_state()) {
    sdk::set_tensor_spec(*out, "conv_state", sdk::DType::kF32, {batch, d.qkv_dim(), d.d_conv - 1});
  } else {
    return sdk::Status::error(sdk::StatusCode::kInvalidArgument, "%s has %d state tensors, not %d", kComponent,
                              state_count(), i + 1);
  }
  return sdk::Status::success();
}

sdk::Status AttentionMixer::saved_spec(std::int32_t i, std::int64_t batch, std::int64_t length,
                                       sdk::TensorSpec* out) const noexcept {
  const AttentionDims& d = layer_.dims;
  const AttentionSavedIndex& index = layer_.saved;
  if (i == index.in_proj_out) {
    sdk::set_tensor_spec(*out, "in_proj_out", sdk::DType::kF32, {batch, length, d.d_in_proj()});
  } else if (i == index.qkv) {
    sdk::set_tensor_spec(*out, "qkv", sdk::DType::kF32, {batch, length, d.qkv_dim()});
  } else if (i == index.out_proj_in) {
    sdk::set_tensor_spec(*out, "out_proj_in", sdk::DType::kF32, {batch, length, d.d_out_in()});
  } else if (i == index.lse) {
    sdk::set_tensor_spec(*out, "lse", sdk::DType::kF32, {batch, d.heads, length});
  } else {
    return sdk::Status::error(sdk::StatusCode::kInvalidArgument, "%s saves %d activations, not %d", kComponent,
                              index.count, i + 1);
  }
  return sdk::Status::success();
}

sdk::Status AttentionMixer::forward(const sdk::Context& context, const sdk::MixerForwardArgs& args) noexcept {
  if (context.device.type != sdk::DeviceType::kCpu) return sdk::util::cpu_only_error(kComponent, context);
  return attention_forward_pass(layer_, context, args);
}

sdk::Status AttentionMixer::backward(const sdk::Context& context, const sdk::MixerBackwardArgs& args) noexcept {
  if (context.device.type != sdk::DeviceType::kCpu) return sdk::util::cpu_only_error(kComponent, context);
  if (args.saved == nullptr) {
    return sdk::Status::error(sdk::StatusCode::kInvalidArgument,
                              "%s backward needs the activations its forward saved (args.saved is null)", kComponent);
  }
  MAMBAKIT_RETURN_IF_ERROR(sdk::util::check_trainable(kComponent, args.params, layer_.params.count, args.x.dtype));
  return attention_backward_pass(layer_, context, args);
}

sdk::Status AttentionMixer::step(const sdk::Context& context, const sdk::MixerStepArgs& args) noexcept {
  if (context.device.type != sdk::DeviceType::kCpu) return sdk::util::cpu_only_error(kComponent, context);
  return attention_step(layer_, context, args, in_proj_shares_, out_proj_shares_);
}

namespace {

sdk::Status register_components(sdk::Registrar& registrar) noexcept {
  return registrar.add_mixer("attention",
                             "multi-head causal attention, the official MHA (GQA, rotary, optional conv and gated "
                             "MLP; KV cache; attention by the chosen attention kernel; CPU)",
                             &sdk::create_component<sdk::Mixer, AttentionMixer>);
}

}  // namespace
}  // namespace mambakit::mixer_attention

MAMBAKIT_PLUGIN("mixer-attention", "0.1.0", mambakit::mixer_attention::register_components)
