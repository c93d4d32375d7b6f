// mixer/ema: a per-channel exponential moving average, the smallest complete mixer plugin.
// A template to copy: its own options (read, defaulted and validated with sdk::Options), its
// own initialisation (initialize()), parameters, recurrent state, forward with initial and
// final state, backward with the accumulate (+=) convention, and the one-token step.
// `mambakit check-plugin mixer/ema --plugin-dir DIR` checks all of it.
//
// Per channel d and step t, with a = sigmoid(decay_logit[d]):
//   h_t = a h_{t-1} + (1 - a) x_t,   y_t = gain[d] h_t.
// Options: "decay" (the initial a, in (0, 1), default 0.9; each channel starts within +-0.5 of
// its logit) and "gain" (the initial gain, default 1).
// Dimensions: B batch, L length, D d_model.

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "mambakit/sdk/options.hpp"
#include "mambakit/sdk/sdk.hpp"

namespace ema_example {

namespace sdk = mambakit::sdk;

float sigmoid(float v) { return 1.0f / (1.0f + std::exp(-v)); }

class EmaMixer final : public sdk::Mixer {
 public:
  enum Param : std::int32_t { kDecayLogit = 0, kGain = 1, kParamCount = 2 };

  explicit EmaMixer(const char* config_json) {
    const sdk::Options options(config_json, "mixer/ema");
    d_model_ = options.integer("d_model", 1);  // a host key, always given
    decay_ = options.number("decay", 0.9);
    if (!(decay_ > 0.0 && decay_ < 1.0)) {
      throw std::invalid_argument("mixer/ema: \"decay\" = " + std::to_string(decay_) + " is invalid: must be in (0, 1)");
    }
    gain_ = options.number("gain", 1.0);
    options.reject_unknown({"n_layer", "layer_index"});  // the other host keys, unused here
  }

  void capabilities(sdk::MixerCapabilities* out) const noexcept override {
    out->devices = sdk::device_bit(sdk::DeviceType::kCpu);
    out->param_dtypes = sdk::dtype_bit(sdk::DType::kF32);
    out->backward = true;
    out->step = true;
  }

  std::int32_t param_count() const noexcept override { return kParamCount; }

  sdk::Status param_spec(std::int32_t index, sdk::ParamSpec* out) const noexcept override {
    if (index == kDecayLogit) {
      sdk::set_tensor_spec(out->tensor, "decay_logit", sdk::DType::kF32, {d_model_});
      out->init = {sdk::InitKind::kComponent};  // see initialize()
      out->weight_decay = false;
    } else if (index == kGain) {
      sdk::set_tensor_spec(out->tensor, "gain", sdk::DType::kF32, {d_model_});
      out->init = {sdk::InitKind::kConstant, gain_};
      out->weight_decay = false;
    } else {
      return sdk::Status::error(sdk::StatusCode::kInvalidArgument, "ema mixer: no parameter %d", index);
    }
    return sdk::Status::success();
  }

  std::int32_t state_count() const noexcept override { return 1; }

  sdk::Status state_spec(std::int32_t index, std::int64_t batch, sdk::TensorSpec* out) const noexcept override {
    if (index != 0) return sdk::Status::error(sdk::StatusCode::kInvalidArgument, "ema mixer: no state %d", index);
    sdk::set_tensor_spec(*out, "ema", sdk::DType::kF32, {batch, d_model_});
    return sdk::Status::success();
  }

  std::int32_t saved_count() const noexcept override { return 0; }

  sdk::Status saved_spec(std::int32_t index, std::int64_t, std::int64_t, sdk::TensorSpec*) const noexcept override {
    return sdk::Status::error(sdk::StatusCode::kInvalidArgument, "ema mixer saves nothing (asked for %d)", index);
  }

  sdk::Status forward(const sdk::Context&, const sdk::MixerForwardArgs& args) noexcept override {
    return sdk::guard([&] {
      const std::int64_t batch = args.x.shape[0], length = args.x.shape[1];
      const float* decay_logit = args.params[kDecayLogit].as<const float>();
      const float* gain = args.params[kGain].as<const float>();
      const float* x = args.x.as<const float>();
      float* y = args.y.as<float>();
      for (std::int64_t b = 0; b < batch; ++b) {
        for (std::int64_t d = 0; d < d_model_; ++d) {
          const float a = sigmoid(decay_logit[d]);
          float h = args.initial_state ? args.initial_state[0].as<const float>()[b * d_model_ + d] : 0.0f;
          for (std::int64_t t = 0; t < length; ++t) {
            const std::int64_t i = (b * length + t) * d_model_ + d;
            h = a * h + (1.0f - a) * x[i];
            y[i] = gain[d] * h;
          }
          if (args.final_state) args.final_state[0].as<float>()[b * d_model_ + d] = h;
        }
      }
      return sdk::Status::success();
    });
  }

  sdk::Status backward(const sdk::Context&, const sdk::MixerBackwardArgs& args) noexcept override {
    return sdk::guard([&] {
      const std::int64_t batch = args.x.shape[0], length = args.x.shape[1];
      const float* decay_logit = args.params[kDecayLogit].as<const float>();
      const float* gain = args.params[kGain].as<const float>();
      const float* x = args.x.as<const float>();
      const float* grad_y = args.grad_y.as<const float>();
      float* grad_x = args.grad_x.as<float>();
      float* grad_decay_logit = args.grad_params ? args.grad_params[kDecayLogit].as<float>() : nullptr;
      float* grad_gain = args.grad_params ? args.grad_params[kGain].as<float>() : nullptr;
      std::vector<float> h(static_cast<std::size_t>(length));
      for (std::int64_t b = 0; b < batch; ++b) {
        for (std::int64_t d = 0; d < d_model_; ++d) {
          const float a = sigmoid(decay_logit[d]);
          const float h_initial = args.initial_state ? args.initial_state[0].as<const float>()[b * d_model_ + d] : 0.0f;
          float state = h_initial;
          for (std::int64_t t = 0; t < length; ++t) {
            state = a * state + (1.0f - a) * x[(b * length + t) * d_model_ + d];
            h[t] = state;
          }
          float carry = args.grad_final_state ? args.grad_final_state[0].as<const float>()[b * d_model_ + d] : 0.0f;
          float grad_a = 0.0f;
          for (std::int64_t t = length - 1; t >= 0; --t) {
            const std::int64_t i = (b * length + t) * d_model_ + d;
            const float adjoint = carry + gain[d] * grad_y[i];  // d loss / d h_t
            if (grad_gain) grad_gain[d] += grad_y[i] * h[t];
            grad_x[i] += (1.0f - a) * adjoint;
            grad_a += adjoint * ((t > 0 ? h[t - 1] : h_initial) - x[i]);
            carry = a * adjoint;
          }
          if (grad_decay_logit) grad_decay_logit[d] += grad_a * a * (1.0f - a);
          if (args.grad_initial_state) args.grad_initial_state[0].as<float>()[b * d_model_ + d] += carry;
        }
      }
      return sdk::Status::success();
    });
  }

  sdk::Status step(const sdk::Context&, const sdk::MixerStepArgs& args) noexcept override {
    return sdk::guard([&] {
      const std::int64_t batch = args.x.shape[0];
      const float* decay_logit = args.params[kDecayLogit].as<const float>();
      const float* gain = args.params[kGain].as<const float>();
      float* state = args.state[0].as<float>();
      for (std::int64_t b = 0; b < batch; ++b) {
        for (std::int64_t d = 0; d < d_model_; ++d) {
          const float a = sigmoid(decay_logit[d]);
          float& h = state[b * d_model_ + d];
          h = a * h + (1.0f - a) * args.x.as<const float>()[b * d_model_ + d];
          args.y.as<float>()[b * d_model_ + d] = gain[d] * h;
        }
      }
      return sdk::Status::success();
    });
  }

  /// decay_logit[d] = logit(decay) + U(-0.5, 0.5), from the host's seed.
  sdk::Status initialize(const sdk::InitArgs& args) noexcept override {
    return sdk::guard([&] {
      sdk::Generator generator(args.seed);
      const double logit = std::log(decay_ / (1.0 - decay_));
      float* decay_logit = args.params[kDecayLogit].as<float>();
      for (std::int64_t d = 0; d < d_model_; ++d) decay_logit[d] = static_cast<float>(logit + generator.uniform(-0.5, 0.5));
      return sdk::Status::success();
    });
  }

 private:
  std::int64_t d_model_ = 0;
  double decay_ = 0.9;
  double gain_ = 1.0;
};

sdk::Status register_components(sdk::Registrar& registrar) noexcept {
  return registrar.add_mixer("ema", "example: per-channel exponential moving average (out-of-tree template)",
                             &sdk::create_component<sdk::Mixer, EmaMixer>);
}

}  // namespace ema_example

MAMBAKIT_PLUGIN("ema-example", "1.0.0", ema_example::register_components)
