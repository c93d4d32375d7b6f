// mixer/test_flawed: a running sum, h_t = h_{t-1} + x_t and y_t = w * h_t per channel, correct
// unless its "flaw" option names one contract it breaks, so the conformance checks can be seen
// to catch each: "gradient" (grad_x 10% off), "accumulate" (gradients overwritten, not added),
// "step" (the step forgets its state), "hidden_state" (forward keeps the state in the object
// and ignores initial_state), "threads" (the output depends on the thread count), "lenient"
// (unknown options accepted). Dimensions: B batch, L length, D d_model.

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "mambakit/sdk/options.hpp"
#include "mambakit/sdk/sdk.hpp"

namespace flawed_plugin {

namespace sdk = mambakit::sdk;

class FlawedMixer final : public sdk::Mixer {
 public:
  explicit FlawedMixer(const char* config_json) {
    const sdk::Options options(config_json, "mixer/test_flawed");
    d_model_ = options.integer("d_model", 1);
    flaw_ = options.string("flaw", "none");
    if (flaw_ != "lenient") options.reject_unknown({"n_layer", "layer_index"});
  }
  void capabilities(sdk::MixerCapabilities* out) const noexcept override {
    out->devices = sdk::device_bit(sdk::DeviceType::kCpu);
    out->param_dtypes = sdk::dtype_bit(sdk::DType::kF32);
    out->backward = true;
    out->step = true;
  }
  std::int32_t param_count() const noexcept override { return 1; }
  sdk::Status param_spec(std::int32_t, sdk::ParamSpec* out) const noexcept override {
    sdk::set_tensor_spec(out->tensor, "weight", sdk::DType::kF32, {d_model_});
    out->init = {sdk::InitKind::kOnes};
    return sdk::Status::success();
  }
  std::int32_t state_count() const noexcept override { return 1; }
  sdk::Status state_spec(std::int32_t, std::int64_t batch, sdk::TensorSpec* out) const noexcept override {
    sdk::set_tensor_spec(*out, "sum", sdk::DType::kF32, {batch, d_model_});
    return sdk::Status::success();
  }
  std::int32_t saved_count() const noexcept override { return 0; }
  sdk::Status saved_spec(std::int32_t, std::int64_t, std::int64_t, sdk::TensorSpec*) const noexcept override {
    return sdk::Status::error(sdk::StatusCode::kInvalidArgument, "test_flawed saves nothing");
  }

  sdk::Status forward(const sdk::Context& context, const sdk::MixerForwardArgs& args) noexcept override {
    const std::int64_t B = args.x.shape[0], L = args.x.shape[1], D = d_model_;
    const float* w = args.params[0].as<const float>();
    if (flaw_ == "hidden_state") hidden_.resize(static_cast<std::size_t>(B * D), 0.0f);
    for (std::int64_t b = 0; b < B; ++b) {
      for (std::int64_t d = 0; d < D; ++d) {
        float h = flaw_ == "hidden_state" ? hidden_[b * D + d]
                  : args.initial_state != nullptr ? args.initial_state[0].as<const float>()[b * D + d]
                                                  : 0.0f;
        for (std::int64_t t = 0; t < L; ++t) {
          const std::int64_t i = (b * L + t) * D + d;
          h += args.x.as<const float>()[i];
          args.y.as<float>()[i] = w[d] * h + (flaw_ == "threads" ? 1e-3f * context.n_threads : 0.0f);
        }
        if (flaw_ == "hidden_state") hidden_[b * D + d] = h;
        if (args.final_state != nullptr) args.final_state[0].as<float>()[b * D + d] = h;
      }
    }
    return sdk::Status::success();
  }

  sdk::Status backward(const sdk::Context&, const sdk::MixerBackwardArgs& args) noexcept override {
    const std::int64_t B = args.x.shape[0], L = args.x.shape[1], D = d_model_;
    const float* w = args.params[0].as<const float>();
    const float* grad_y = args.grad_y.as<const float>();
    float* grad_x = args.grad_x.as<float>();
    float* grad_w = args.grad_params[0].as<float>();
    if (flaw_ == "accumulate") {
      std::fill(grad_x, grad_x + B * L * D, 0.0f);
      std::fill(grad_w, grad_w + D, 0.0f);
    }
    for (std::int64_t b = 0; b < B; ++b) {
      for (std::int64_t d = 0; d < D; ++d) {
        float h = args.initial_state != nullptr ? args.initial_state[0].as<const float>()[b * D + d] : 0.0f;
        for (std::int64_t t = 0; t < L; ++t) {
          h += args.x.as<const float>()[(b * L + t) * D + d];
          grad_w[d] += grad_y[(b * L + t) * D + d] * h;
        }
        float carry = args.grad_final_state != nullptr ? args.grad_final_state[0].as<const float>()[b * D + d] : 0.0f;
        for (std::int64_t t = L - 1; t >= 0; --t) {
          carry += w[d] * grad_y[(b * L + t) * D + d];  // d loss / d h_t, which every x_s, s <= t, feeds
          grad_x[(b * L + t) * D + d] += flaw_ == "gradient" ? 1.1f * carry : carry;
        }
        if (args.grad_initial_state != nullptr) args.grad_initial_state[0].as<float>()[b * D + d] += carry;
      }
    }
    return sdk::Status::success();
  }

  sdk::Status step(const sdk::Context& context, const sdk::MixerStepArgs& args) noexcept override {
    const std::int64_t B = args.x.shape[0], D = d_model_;
    const float* w = args.params[0].as<const float>();
    float* h = args.state[0].as<float>();
    for (std::int64_t i = 0; i < B * D; ++i) {
      h[i] = (flaw_ == "step" ? 0.0f : h[i]) + args.x.as<const float>()[i];
      args.y.as<float>()[i] = w[i % D] * h[i] + (flaw_ == "threads" ? 1e-3f * context.n_threads : 0.0f);
    }
    return sdk::Status::success();
  }

 private:
  std::int64_t d_model_ = 0;
  std::string flaw_;
  std::vector<float> hidden_;
};

sdk::Status register_components(sdk::Registrar& registrar) noexcept {
  return registrar.add_mixer("test_flawed", "test: a running sum with a chosen flaw",
                             &sdk::create_component<sdk::Mixer, FlawedMixer>);
}

}  // namespace flawed_plugin

MAMBAKIT_PLUGIN("test-flawed", "1.0.0", flawed_plugin::register_components)
