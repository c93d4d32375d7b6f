#include "mamba2_mixer.hpp"

#include <cmath>

#include <algorithm>
#include <string>
#include <vector>

#include "mamba2_config_adapters.hpp"
#include "mambakit/sdk/options.hpp"
#include "mambakit/sdk/plugin.hpp"
#include "mambakit/sdk/random.hpp"
#include "mambakit/sdk/util/mixer_declarations.hpp"
#include "mambakit/sdk/util/typed_params.hpp"

namespace mambakit::mixer_mamba2 {

using sdk::util::declare_param;
using sdk::util::uniform_init;

namespace {

constexpr const char* kComponent = "mixer/mamba2";

[[noreturn]] void invalid(const char* key, const nlohmann::json& value, const std::string& rule) {
  throw std::invalid_argument(std::string(kComponent) + ": \"" + key + "\" = " + value.dump() + " is invalid: " + rule);
}

Mamba2Dims read_dims(const char* config_json) {
  const sdk::Options config(config_json, kComponent);
  auto require = [](bool ok, const char* key, const auto& value, const std::string& rule) {
    if (!ok) invalid(key, value, rule);
  };
  const std::int64_t default_expand = 2, default_conv = 4, default_state = 128, default_head_dim = 64,
                     default_groups = 1, default_layers = 1, no_layer = 0, default_chunk = 256;
  Mamba2Dims dims;
  dims.d_model = config.integer("d_model", 1);
  dims.d_inner = config.integer("expand", 1, &default_expand) * dims.d_model;
  dims.d_state = config.integer("d_state", 1, &default_state);
  require(dims.d_state <= 1024, "d_state", dims.d_state, "must be in [1, 1024]");
  dims.d_conv = config.integer("d_conv", 1, &default_conv);
  require(dims.d_conv <= 16, "d_conv", dims.d_conv, "must be in [1, 16]");
  dims.head_dim = config.integer("head_dim", 1, &default_head_dim);
  require(dims.d_inner % dims.head_dim == 0, "head_dim", dims.head_dim,
          "must divide d_inner = expand * d_model = " + std::to_string(dims.d_inner));
  dims.heads = dims.d_inner / dims.head_dim;
  if (config.has("num_heads")) {
    const std::int64_t heads = config.integer("num_heads", 1);
    require(heads == dims.heads, "num_heads", heads,
            "must be d_inner / head_dim = " + std::to_string(dims.heads));
  }
  dims.groups = config.integer("n_groups", 1, &default_groups);
  require(dims.heads % dims.groups == 0, "n_groups", dims.groups,
          "must divide the number of heads, " + std::to_string(dims.heads));
  // The scan's result does not depend on the chunk length; the kernel picks its own.
  config.integer("chunk_size", 1, &default_chunk);
  dims.n_layer = config.integer("n_layer", 1, &default_layers);
  config.integer("layer_index", 0, &no_layer);
  dims.conv_bias = config.boolean("conv_bias", true);
  dims.bias = config.boolean("bias", false);
  dims.norm_eps = config.number("norm_eps", 1e-5);
  require(dims.norm_eps > 0, "norm_eps", dims.norm_eps, "must be > 0");
  dims.dt_limit_min = config.number("dt_limit_min", 0.0);
  require(dims.dt_limit_min >= 0, "dt_limit_min", dims.dt_limit_min, "must be >= 0");
  if (config.has("dt_limit_max")) {
    dims.dt_limit_max = config.number("dt_limit_max", 0.0);
    require(dims.dt_limit_max > dims.dt_limit_min, "dt_limit_max", dims.dt_limit_max, "must be > dt_limit_min");
  }
  dims.dt_min = config.number("dt_min", 0.001);
  require(dims.dt_min > 0, "dt_min", dims.dt_min, "must be > 0");
  dims.dt_max = config.number("dt_max", 0.1);
  require(dims.dt_max >= dims.dt_min, "dt_max", dims.dt_max, "must be >= dt_min");
  dims.dt_init_floor = config.number("dt_init_floor", 1e-4);
  require(dims.dt_init_floor >= 0, "dt_init_floor", dims.dt_init_floor, "must be >= 0");
  dims.a_init_min = config.number("a_init_min", 1.0);
  require(dims.a_init_min > 0, "a_init_min", dims.a_init_min, "must be > 0");
  dims.a_init_max = config.number("a_init_max", 16.0);
  require(dims.a_init_max >= dims.a_init_min, "a_init_max", dims.a_init_max, "must be >= a_init_min");
  config.reject_unknown();
  return dims;
}

}  // namespace

Mamba2Mixer::Mamba2Mixer(const char* config_json) : dims_(read_dims(config_json)), index_(dims_) {}

void Mamba2Mixer::capabilities(sdk::MixerCapabilities* out) const noexcept {
  sdk::util::set_cpu_mixer_capabilities(out);
}

sdk::Status Mamba2Mixer::param_spec(std::int32_t i, sdk::ParamSpec* out) const noexcept {
  const std::int64_t D = dims_.d_model, E = dims_.d_inner, H = dims_.heads, K = dims_.d_conv;
  const std::int64_t C = dims_.conv_dim(), I = dims_.d_in_proj();
  // nn.Linear's and nn.Conv1d's U(+-1/sqrt(fan_in)); out_proj rescaled by 1/sqrt(n_layer) for
  // the pre-norm residual; D = 1 and the norm's weight = 1.
  if (i == index_.in_proj_weight) {
    declare_param(out, "in_proj.weight", {I, D}, uniform_init(1.0 / std::sqrt(D)), true);
    out->linear_weight = true;
  } else if (i == index_.in_proj_bias) {
    declare_param(out, "in_proj.bias", {I}, {sdk::InitKind::kZeros}, false);
  } else if (i == index_.conv_weight) {
    declare_param(out, "conv1d.weight", {C, 1, K}, uniform_init(1.0 / std::sqrt(K)), true);
  } else if (i == index_.conv_bias) {
    declare_param(out, "conv1d.bias", {C}, uniform_init(1.0 / std::sqrt(K)), false);
  } else if (i == index_.dt_bias) {
    declare_param(out, "dt_bias", {H}, {sdk::InitKind::kComponent}, false);
  } else if (i == index_.a_log) {
    declare_param(out, "A_log", {H}, {sdk::InitKind::kComponent}, false);
  } else if (i == index_.d) {
    declare_param(out, "D", {H}, {sdk::InitKind::kOnes}, false);
  } else if (i == index_.norm_weight) {
    declare_param(out, "norm.weight", {E}, {sdk::InitKind::kOnes}, false);
  } else if (i == index_.out_proj_weight) {
    declare_param(out, "out_proj.weight", {D, E},
                  uniform_init(1.0 / std::sqrt(E * static_cast<double>(dims_.n_layer))), true);
    out->linear_weight = true;
  } else if (i == index_.out_proj_bias) {
    declare_param(out, "out_proj.bias", {D}, {sdk::InitKind::kZeros}, false);
  } else {
    return sdk::Status::error(sdk::StatusCode::kInvalidArgument, "%s has %d parameters, not %d", kComponent,
                              index_.count, i + 1);
  }
  return sdk::Status::success();
}

sdk::Status Mamba2Mixer::initialize(const sdk::InitArgs& args) noexcept {
  return sdk::guard([&]() -> sdk::Status {
    auto fill = [&](int index, const std::vector<double>& values) {
      const sdk::TensorView& view = args.params[index];
      for (std::int64_t j = 0; j < view.numel(); ++j) {
        if (view.dtype == sdk::DType::kF64) {
          view.as<double>()[j] = values[static_cast<std::size_t>(j)];
        } else {
          view.as<float>()[j] = static_cast<float>(values[static_cast<std::size_t>(j)]);
        }
      }
    };
    sdk::Generator generator(args.seed);
    std::vector<double> a_log(static_cast<std::size_t>(dims_.heads)), dt_bias(a_log.size());
    for (auto& value : a_log) value = std::log(generator.uniform(dims_.a_init_min, dims_.a_init_max));
    for (auto& value : dt_bias) {
      const double dt = std::max(std::exp(generator.uniform(std::log(dims_.dt_min), std::log(dims_.dt_max))),
                                 dims_.dt_init_floor);
      value = dt + std::log(-std::expm1(-dt));  // softplus^-1
    }
    fill(index_.a_log, a_log);
    fill(index_.dt_bias, dt_bias);
    return sdk::Status::success();
  });
}

sdk::Status Mamba2Mixer::state_spec(std::int32_t i, std::int64_t batch, sdk::TensorSpec* out) const noexcept {
  if (i == kConvState) {
    sdk::set_tensor_spec(*out, "conv_state", sdk::DType::kF32, {batch, dims_.conv_dim(), dims_.d_conv});
  } else if (i == kSsmState) {
    sdk::set_tensor_spec(*out, "ssm_state", sdk::DType::kF32, {batch, dims_.heads, dims_.head_dim, dims_.d_state});
  } else {
    return sdk::Status::error(sdk::StatusCode::kInvalidArgument, "%s has 2 state tensors, not %d", kComponent, i + 1);
  }
  return sdk::Status::success();
}

sdk::Status Mamba2Mixer::saved_spec(std::int32_t i, std::int64_t batch, std::int64_t length,
                                    sdk::TensorSpec* out) const noexcept {
  if (i == kSavedZxbcdt) {
    sdk::set_tensor_spec(*out, "zxbcdt", sdk::DType::kF32, {batch, length, dims_.d_in_proj()});
  } else if (i == kSavedY) {
    sdk::set_tensor_spec(*out, "y", sdk::DType::kF32, {batch, length, dims_.d_inner});
  } else {
    return sdk::Status::error(sdk::StatusCode::kInvalidArgument, "%s saves %d activations, not %d", kComponent,
                              static_cast<int>(kSavedCount), i + 1);
  }
  return sdk::Status::success();
}

sdk::Status Mamba2Mixer::forward(const sdk::Context& context, const sdk::MixerForwardArgs& args) noexcept {
  if (context.device.type != sdk::DeviceType::kCpu) return sdk::util::cpu_only_error(kComponent, context);
  return mamba2_forward(dims_, index_, context, args);
}

sdk::Status Mamba2Mixer::backward(const sdk::Context& context, const sdk::MixerBackwardArgs& args) noexcept {
  if (context.device.type != sdk::DeviceType::kCpu) return sdk::util::cpu_only_error(kComponent, context);
  if (args.saved == nullptr) {
    return sdk::Status::error(sdk::StatusCode::kInvalidArgument,
                              "%s backward needs the activations its forward saved (args.saved is null)", kComponent);
  }
  MAMBAKIT_RETURN_IF_ERROR(sdk::util::check_trainable(kComponent, args.params, index_.count, args.x.dtype));
  return mamba2_backward(dims_, index_, context, args);
}

sdk::Status Mamba2Mixer::step(const sdk::Context& context, const sdk::MixerStepArgs& args) noexcept {
  if (context.device.type != sdk::DeviceType::kCpu) return sdk::util::cpu_only_error(kComponent, context);
  return mamba2_step(dims_, index_, context, args, in_proj_shares_, out_proj_shares_);
}

namespace {

sdk::Status register_components(sdk::Registrar& registrar) noexcept {
  MAMBAKIT_RETURN_IF_ERROR(registrar.add_config_adapter(
      "mamba2-hf", "Hugging Face config.json of model_type \"mamba2\" (Mamba-2, mixer/mamba2)",
      &sdk::create_component<sdk::ConfigAdapter, HfMamba2ConfigAdapter>));
  return registrar.add_mixer("mamba2", "Mamba-2 SSD mixer (official semantics, HF/official names; scan by the chosen ssd kernel; CPU)",
                             &sdk::create_component<sdk::Mixer, Mamba2Mixer>);
}

}  // namespace
}  // namespace mambakit::mixer_mamba2

MAMBAKIT_PLUGIN("mixer-mamba2", "0.1.0", mambakit::mixer_mamba2::register_components)
