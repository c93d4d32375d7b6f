#include "gated_mlp_mixer.hpp"

#include <cmath>

#include <initializer_list>
#include <stdexcept>
#include <string>
#include <utility>

#include "mambakit/sdk/options.hpp"
#include "mambakit/sdk/plugin.hpp"
#include "mambakit/sdk/util/mixer_declarations.hpp"
#include "mambakit/sdk/util/typed_params.hpp"

namespace mambakit::mixer_gated_mlp {

using sdk::util::declare_param;
using sdk::util::uniform_init;

namespace {

constexpr const char* kComponent = "mixer/gated_mlp";
/// A bound far above any published model's MLP width, so that a damaged config is refused
/// before its parameters are allocated.
constexpr std::int64_t kMaxWidth = std::int64_t{1} << 24;

GatedMlpDims read_dims(const char* config_json) {
  const sdk::Options config(config_json, kComponent);
  const std::int64_t default_multiple = 128, default_layers = 1, no_layer = 0;
  GatedMlpDims dims;
  dims.d_model = config.integer("d_model", 1);
  dims.n_layer = config.integer("n_layer", 1, &default_layers);
  config.integer("layer_index", 0, &no_layer);
  const std::int64_t d_intermediate = config.integer("d_intermediate", 1);
  const std::int64_t multiple_of = config.integer("multiple_of", 1, &default_multiple);
  for (const auto& [key, value] :
       {std::pair{"d_intermediate", d_intermediate}, std::pair{"multiple_of", multiple_of}}) {
    if (value > kMaxWidth) {
      throw std::invalid_argument(std::string(kComponent) + ": \"" + key + "\" = " + std::to_string(value) +
                                  " is invalid: must be <= " + std::to_string(kMaxWidth));
    }
  }
  dims.hidden = (d_intermediate + multiple_of - 1) / multiple_of * multiple_of;
  dims.bias = config.boolean("bias", false);
  config.reject_unknown();
  return dims;
}

}  // namespace

GatedMlp::GatedMlp(const char* config_json) : dims_(read_dims(config_json)), index_(dims_) {}

void GatedMlp::capabilities(sdk::MixerCapabilities* out) const noexcept {
  sdk::util::set_cpu_mixer_capabilities(out);
}

sdk::Status GatedMlp::param_spec(std::int32_t i, sdk::ParamSpec* out) const noexcept {
  const std::int64_t D = dims_.d_model, F = dims_.hidden;
  // kaiming_uniform_(a=sqrt(5)) is U(+-1/sqrt(fan_in)). MambaLMHeadModel's last _init_weights
  // pass (n_residuals_per_layer left at 1) redraws fc2.weight and divides it by sqrt(n_layer);
  // the biases are zeroed.
  if (i == index_.fc1_weight) {
    declare_param(out, "fc1.weight", {2 * F, D}, uniform_init(1.0 / std::sqrt(static_cast<double>(D))), true);
    out->linear_weight = true;
  } else if (i == index_.fc1_bias) {
    declare_param(out, "fc1.bias", {2 * F}, {sdk::InitKind::kZeros}, false);
  } else if (i == index_.fc2_weight) {
    const double fan_in_times_layers = static_cast<double>(F) * static_cast<double>(dims_.n_layer);
    declare_param(out, "fc2.weight", {D, F}, uniform_init(1.0 / std::sqrt(fan_in_times_layers)), true);
    out->linear_weight = true;
  } else if (i == index_.fc2_bias) {
    declare_param(out, "fc2.bias", {D}, {sdk::InitKind::kZeros}, false);
  } else {
    return sdk::Status::error(sdk::StatusCode::kInvalidArgument, "%s has %d parameters, not %d", kComponent,
                              index_.count, i + 1);
  }
  return sdk::Status::success();
}

sdk::Status GatedMlp::state_spec(std::int32_t i, std::int64_t /*batch*/, sdk::TensorSpec* /*out*/) const noexcept {
  return sdk::Status::error(sdk::StatusCode::kInvalidArgument, "%s has no state tensors, not %d", kComponent, i + 1);
}

sdk::Status GatedMlp::saved_spec(std::int32_t i, std::int64_t batch, std::int64_t length,
                                 sdk::TensorSpec* out) const noexcept {
  if (i != kSavedFc1) {
    return sdk::Status::error(sdk::StatusCode::kInvalidArgument, "%s saves %d activation, not %d", kComponent,
                              static_cast<int>(kSavedCount), i + 1);
  }
  sdk::set_tensor_spec(*out, "fc1_out", sdk::DType::kF32, {batch, length, 2 * dims_.hidden});
  return sdk::Status::success();
}

sdk::Status GatedMlp::forward(const sdk::Context& context, const sdk::MixerForwardArgs& args) noexcept {
  if (context.device.type != sdk::DeviceType::kCpu) return sdk::util::cpu_only_error(kComponent, context);
  return gated_mlp_forward(dims_, index_, context, args);
}

sdk::Status GatedMlp::backward(const sdk::Context& context, const sdk::MixerBackwardArgs& args) noexcept {
  if (context.device.type != sdk::DeviceType::kCpu) return sdk::util::cpu_only_error(kComponent, context);
  if (args.saved == nullptr) {
    return sdk::Status::error(sdk::StatusCode::kInvalidArgument,
                              "%s backward needs the activations its forward saved (args.saved is null)", kComponent);
  }
  MAMBAKIT_RETURN_IF_ERROR(sdk::util::check_trainable(kComponent, args.params, index_.count, args.x.dtype));
  return gated_mlp_backward(dims_, index_, context, args);
}

sdk::Status GatedMlp::step(const sdk::Context& context, const sdk::MixerStepArgs& args) noexcept {
  if (context.device.type != sdk::DeviceType::kCpu) return sdk::util::cpu_only_error(kComponent, context);
  return gated_mlp_step(dims_, index_, context, args, fc1_shares_, fc2_shares_);
}

namespace {

sdk::Status register_components(sdk::Registrar& registrar) noexcept {
  return registrar.add_mixer("gated_mlp",
                             "official mamba_ssm GatedMLP, fc2(a * silu(g)) with a | g = fc1(x), for a block's \"mlp\" "
                             "slot (stateless; CPU)",
                             &sdk::create_component<sdk::Mixer, GatedMlp>);
}

}  // namespace
}  // namespace mambakit::mixer_gated_mlp

MAMBAKIT_PLUGIN("mixer-gated_mlp", "0.1.0", mambakit::mixer_gated_mlp::register_components)
