#include "s6_mixer.hpp"

#include <cmath>

#include <algorithm>
#include <vector>

#include "mambakit/sdk/options.hpp"
#include "mambakit/sdk/random.hpp"
#include "s6_config_adapters.hpp"
#include "mambakit/sdk/plugin.hpp"
#include "s6_cuda.hpp"
#include "mambakit/sdk/util/mixer_declarations.hpp"
#include "mambakit/sdk/util/typed_params.hpp"

namespace mambakit::mixer_s6 {

using sdk::util::declare_param;
using sdk::util::uniform_init;

namespace {

S6Dims read_dims(const char* config_json) {
  const sdk::Options config(config_json, "mixer/s6");
  auto require = [](bool ok, const char* key, double value, const char* rule) {
    if (!ok) {
      throw std::invalid_argument("mixer/s6: \"" + std::string(key) + "\" = " + nlohmann::json(value).dump() +
                                  " is invalid: " + rule);
    }
  };
  S6Dims dims;
  dims.d_model = config.integer("d_model", 1);
  const std::int64_t default_expand = 2, default_conv = 4, default_state = 16, default_layers = 1, no_layer = 0;
  dims.d_inner = config.integer("expand", 1, &default_expand) * dims.d_model;
  dims.d_state = config.integer("d_state", 1, &default_state);
  require(dims.d_state <= 256, "d_state", static_cast<double>(dims.d_state), "must be in [1, 256]");
  dims.d_conv = config.integer("d_conv", 1, &default_conv);
  require(dims.d_conv <= 16, "d_conv", static_cast<double>(dims.d_conv), "must be in [1, 16]");
  const std::int64_t auto_rank = (dims.d_model + 15) / 16;  // "auto": ceil(d_model / 16)
  dims.dt_rank = config.string_or_integer("dt_rank", "auto") == "auto" ? auto_rank : config.integer("dt_rank", 1);
  dims.n_layer = config.integer("n_layer", 1, &default_layers);
  config.integer("layer_index", 0, &no_layer);
  dims.conv_bias = config.boolean("conv_bias", true);
  dims.bias = config.boolean("bias", false);
  dims.dt_min = config.number("dt_min", 0.001);
  require(dims.dt_min > 0, "dt_min", dims.dt_min, "must be > 0");
  dims.dt_max = config.number("dt_max", 0.1);
  require(dims.dt_max >= dims.dt_min, "dt_max", dims.dt_max, "must be >= dt_min");
  dims.dt_init_floor = config.number("dt_init_floor", 1e-4);
  require(dims.dt_init_floor >= 0, "dt_init_floor", dims.dt_init_floor, "must be >= 0");
  dims.dt_scale = config.number("dt_scale", 1.0);
  require(dims.dt_scale > 0, "dt_scale", dims.dt_scale, "must be > 0");
  const std::string dt_init = config.string("dt_init", "random");
  if (dt_init != "random" && dt_init != "constant") {
    throw std::invalid_argument("mixer/s6: \"dt_init\" = \"" + dt_init + "\" is invalid: must be random or constant");
  }
  dims.dt_init_random = dt_init == "random";
  config.reject_unknown();
  return dims;
}

}  // namespace

S6Mixer::S6Mixer(const char* config_json) : dims_(read_dims(config_json)), index_(dims_) {}

void S6Mixer::capabilities(sdk::MixerCapabilities* out) const noexcept {
  sdk::util::set_cpu_mixer_capabilities(out);
#ifdef MAMBAKIT_S6_WITH_CUDA
  // On CUDA: forward and step with f32, f16 or bf16 parameters, forward with saved activations
  // and backward with f32 ones; f64 stays on the CPU (see s6_cuda.hpp).
  out->devices |= sdk::device_bit(sdk::DeviceType::kCuda);
#endif
}

sdk::Status S6Mixer::param_spec(std::int32_t i, sdk::ParamSpec* out) const noexcept {
  const std::int64_t D = dims_.d_model, E = dims_.d_inner, N = dims_.d_state, K = dims_.d_conv, R = dims_.dt_rank;
  // Initialisation as in the reference Mamba: nn.Linear's U(+-1/sqrt(fan_in)), out_proj
  // rescaled by 1/sqrt(n_layer) for the pre-norm residual, dt_proj so that softplus(bias)
  // starts log-uniform in [dt_min, dt_max], A_log = log(1..N), D = 1.
  const double dt_std = std::pow(static_cast<double>(R), -0.5) * dims_.dt_scale;
  if (i == index_.in_proj_weight) {
    declare_param(out, "in_proj.weight", {2 * E, D}, uniform_init(1.0 / std::sqrt(D)), true);
    out->linear_weight = true;
  } else if (i == index_.in_proj_bias) {
    declare_param(out, "in_proj.bias", {2 * E}, {sdk::InitKind::kZeros}, false);
  } else if (i == index_.conv_weight) {
    declare_param(out, "conv1d.weight", {E, 1, K}, uniform_init(1.0 / std::sqrt(K)), true);
  } else if (i == index_.conv_bias) {
    declare_param(out, "conv1d.bias", {E}, uniform_init(1.0 / std::sqrt(K)), false);
  } else if (i == index_.x_proj_weight) {
    declare_param(out, "x_proj.weight", {R + 2 * N, E}, uniform_init(1.0 / std::sqrt(E)), true);
    out->linear_weight = true;
  } else if (i == index_.dt_proj_weight) {
    declare_param(out, "dt_proj.weight", {E, R},
                  dims_.dt_init_random ? uniform_init(dt_std) : sdk::Init{sdk::InitKind::kConstant, dt_std}, true);
    out->linear_weight = true;
  } else if (i == index_.dt_proj_bias) {
    declare_param(out, "dt_proj.bias", {E}, {sdk::InitKind::kComponent}, false);  // see initialize()
  } else if (i == index_.a_log) {
    declare_param(out, "A_log", {E, N}, {sdk::InitKind::kComponent}, false);
  } else if (i == index_.d) {
    declare_param(out, "D", {E}, {sdk::InitKind::kOnes}, false);
  } else if (i == index_.out_proj_weight) {
    declare_param(out, "out_proj.weight", {D, E},
                  uniform_init(1.0 / std::sqrt(E * static_cast<double>(dims_.n_layer))), true);
    out->linear_weight = true;
  } else if (i == index_.out_proj_bias) {
    declare_param(out, "out_proj.bias", {D}, {sdk::InitKind::kZeros}, false);
  } else {
    return sdk::Status::error(sdk::StatusCode::kInvalidArgument, "mixer/s6 has %d parameters, not %d", index_.count,
                              i + 1);
  }
  return sdk::Status::success();
}

sdk::Status S6Mixer::initialize(const sdk::InitArgs& args) noexcept {
  return sdk::guard([&]() -> sdk::Status {
    const std::int64_t E = dims_.d_inner, N = dims_.d_state;
    auto fill = [&](int index, auto value_of) {
      const sdk::TensorView& view = args.params[index];
      for (std::int64_t j = 0; j < view.numel(); ++j) {
        if (view.dtype == sdk::DType::kF64) {
          view.as<double>()[j] = value_of(j);
        } else {
          view.as<float>()[j] = static_cast<float>(value_of(j));
        }
      }
    };
    // S4D-real: A_log[e, n] = log(n + 1).
    fill(index_.a_log, [&](std::int64_t j) { return std::log(1.0 + static_cast<double>(j % N)); });
    // dt bias: softplus^-1(dt) with dt log-uniform in [dt_min, dt_max], clamped below at the floor.
    sdk::Generator generator(args.seed);
    std::vector<double> bias(static_cast<std::size_t>(E));
    for (auto& value : bias) {
      const double dt = std::max(std::exp(generator.uniform(std::log(dims_.dt_min), std::log(dims_.dt_max))),
                                 dims_.dt_init_floor);
      value = dt + std::log(-std::expm1(-dt));
    }
    fill(index_.dt_proj_bias, [&](std::int64_t j) { return bias[static_cast<std::size_t>(j)]; });
    return sdk::Status::success();
  });
}

sdk::Status S6Mixer::state_spec(std::int32_t i, std::int64_t batch, sdk::TensorSpec* out) const noexcept {
  if (i == kConvState) {
    sdk::set_tensor_spec(*out, "conv_state", sdk::DType::kF32, {batch, dims_.d_inner, dims_.d_conv});
  } else if (i == kSsmState) {
    sdk::set_tensor_spec(*out, "ssm_state", sdk::DType::kF32, {batch, dims_.d_inner, dims_.d_state});
  } else {
    return sdk::Status::error(sdk::StatusCode::kInvalidArgument, "mixer/s6 has 2 state tensors, not %d", i + 1);
  }
  return sdk::Status::success();
}

sdk::Status S6Mixer::saved_spec(std::int32_t i, std::int64_t batch, std::int64_t length,
                                sdk::TensorSpec* out) const noexcept {
  if (i == kSavedXz) {
    sdk::set_tensor_spec(*out, "xz", sdk::DType::kF32, {batch, length, 2 * dims_.d_inner});
  } else if (i == kSavedDbc) {
    sdk::set_tensor_spec(*out, "dbc", sdk::DType::kF32, {batch, length, dims_.dbc_width()});
  } else if (i == kSavedY) {
    sdk::set_tensor_spec(*out, "y", sdk::DType::kF32, {batch, length, dims_.d_inner});
  } else {
    return sdk::Status::error(sdk::StatusCode::kInvalidArgument, "mixer/s6 saves %d activations, not %d",
                              static_cast<int>(kSavedCount), i + 1);
  }
  return sdk::Status::success();
}

namespace {

/// kUnsupported for a call on a device this build cannot run.
sdk::Status no_device(const sdk::Context& context) noexcept {
  return sdk::Status::error(sdk::StatusCode::kUnsupported, "mixer/s6 was built without support for %s tensors",
                            sdk::device_type_name(context.device.type));
}

}  // namespace

sdk::Status S6Mixer::forward(const sdk::Context& context, const sdk::MixerForwardArgs& args) noexcept {
  if (context.device.type == sdk::DeviceType::kCpu) return s6_forward(dims_, index_, context, args);
#ifdef MAMBAKIT_S6_WITH_CUDA
  if (context.device.type == sdk::DeviceType::kCuda) return s6_forward_cuda(dims_, index_, context, args);
#endif
  return no_device(context);
}

sdk::Status S6Mixer::backward(const sdk::Context& context, const sdk::MixerBackwardArgs& args) noexcept {
  if (args.saved == nullptr) {
    return sdk::Status::error(sdk::StatusCode::kInvalidArgument,
                              "mixer/s6 backward needs the activations its forward saved (args.saved is null)");
  }
  MAMBAKIT_RETURN_IF_ERROR(sdk::util::check_trainable("mixer/s6", args.params, index_.count, args.x.dtype));
  if (context.device.type == sdk::DeviceType::kCpu) return s6_backward(dims_, index_, context, args);
#ifdef MAMBAKIT_S6_WITH_CUDA
  if (context.device.type == sdk::DeviceType::kCuda) return s6_backward_cuda(dims_, index_, context, args);
#endif
  return no_device(context);
}

sdk::Status S6Mixer::step(const sdk::Context& context, const sdk::MixerStepArgs& args) noexcept {
  if (context.device.type == sdk::DeviceType::kCpu) return s6_step(dims_, index_, context, args, step_shares_, step_a_);
#ifdef MAMBAKIT_S6_WITH_CUDA
  if (context.device.type == sdk::DeviceType::kCuda) return s6_step_cuda(dims_, index_, context, args);
#endif
  return no_device(context);
}

namespace {

sdk::Status register_components(sdk::Registrar& registrar) noexcept {
  MAMBAKIT_RETURN_IF_ERROR(registrar.add_config_adapter(
      "mamba-hf", "Hugging Face config.json of model_type \"mamba\" (Mamba-1, mixer/s6)",
      &sdk::create_component<sdk::ConfigAdapter, HfMambaConfigAdapter>));
  MAMBAKIT_RETURN_IF_ERROR(registrar.add_config_adapter(
      "mambakit-1", "mambakit's first config format (Mamba-1 keys at the top level)",
      &sdk::create_component<sdk::ConfigAdapter, MambakitV1ConfigAdapter>));
  return registrar.add_mixer("s6", "Mamba-1 selective SSM mixer (Hugging Face layout; scan by the chosen kernel)",
                             &sdk::create_component<sdk::Mixer, S6Mixer>);
}

}  // namespace
}  // namespace mambakit::mixer_s6

MAMBAKIT_PLUGIN("mixer-s6", "0.1.0", mambakit::mixer_s6::register_components)
