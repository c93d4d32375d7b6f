// A well-formed test plugin: mixer/test_affine (y = w * x + b per channel, no state) and
// scan/test_scored, a scan backend that runs nothing but scores by problem length, so that
// `auto` selection can be observed.

#include <cstdint>
#include <stdexcept>
#include <string>

#include "inert_scan.hpp"

namespace good_plugin {

namespace sdk = mambakit::sdk;

class AffineMixer final : public sdk::Mixer {
 public:
  explicit AffineMixer(const char* config_json) {
    const std::string json = config_json;
    const auto at = json.find("\"d_model\":");
    if (at == std::string::npos) throw std::invalid_argument("test_affine: config lacks d_model");
    d_model_ = std::stoll(json.substr(at + 10));
  }
  void capabilities(sdk::MixerCapabilities* out) const noexcept override {
    out->devices = sdk::device_bit(sdk::DeviceType::kCpu);
    out->param_dtypes = sdk::dtype_bit(sdk::DType::kF32);
  }
  std::int32_t param_count() const noexcept override { return 2; }
  sdk::Status param_spec(std::int32_t index, sdk::ParamSpec* out) const noexcept override {
    sdk::set_tensor_spec(out->tensor, index == 0 ? "weight" : "bias", sdk::DType::kF32, {d_model_});
    return sdk::Status::success();
  }
  std::int32_t state_count() const noexcept override { return 0; }
  sdk::Status state_spec(std::int32_t, std::int64_t, sdk::TensorSpec*) const noexcept override {
    return sdk::Status::error(sdk::StatusCode::kInvalidArgument, "test_affine has no state");
  }
  std::int32_t saved_count() const noexcept override { return 0; }
  sdk::Status saved_spec(std::int32_t, std::int64_t, std::int64_t, sdk::TensorSpec*) const noexcept override {
    return sdk::Status::error(sdk::StatusCode::kInvalidArgument, "test_affine saves nothing");
  }
  sdk::Status forward(const sdk::Context&, const sdk::MixerForwardArgs& args) noexcept override {
    const float* w = args.params[0].as<const float>();
    const float* b = args.params[1].as<const float>();
    const std::int64_t rows = args.x.numel() / d_model_;
    for (std::int64_t r = 0; r < rows; ++r) {
      for (std::int64_t d = 0; d < d_model_; ++d) {
        args.y.as<float>()[r * d_model_ + d] = w[d] * args.x.as<const float>()[r * d_model_ + d] + b[d];
      }
    }
    return sdk::Status::success();
  }
  sdk::Status backward(const sdk::Context&, const sdk::MixerBackwardArgs&) noexcept override {
    return sdk::Status::error(sdk::StatusCode::kUnsupported, "test_affine has no backward");
  }
  sdk::Status step(const sdk::Context&, const sdk::MixerStepArgs&) noexcept override {
    return sdk::Status::error(sdk::StatusCode::kUnsupported, "test_affine has no step");
  }

 private:
  std::int64_t d_model_ = 0;
};

// Beats scan/sequential (score 1) only for CPU problems longer than 100 steps.
struct ScoredScan final : fixture_plugins::InertScan {
  explicit ScoredScan(const char* config) : InertScan(config) {}
  void capabilities(sdk::ScanCapabilities* out) const noexcept override {
    out->devices = sdk::device_bit(sdk::DeviceType::kCpu);
    out->dtypes = sdk::dtype_bit(sdk::DType::kF32);
    out->max_d_state = 16;
  }
  std::int32_t score(const sdk::KernelProblem& problem) const noexcept override {
    return problem.device.type == sdk::DeviceType::kCpu && sdk::selective_scan_shape(problem).length > 100 ? 50 : 0;
  }
};

sdk::Status register_components(sdk::Registrar& registrar) noexcept {
  MAMBAKIT_RETURN_IF_ERROR(registrar.add_mixer("test_affine", "test: y = w x + b",
                                               &sdk::create_component<sdk::Mixer, AffineMixer>));
  return registrar.add_kernel(sdk::kSelectiveScanKind, "test_scored", "test: scores 50 above length 100, runs nothing",
                              &sdk::create_component<sdk::Kernel, ScoredScan>);
}

}  // namespace good_plugin

MAMBAKIT_PLUGIN("test-good", "2.3.4", good_plugin::register_components)
