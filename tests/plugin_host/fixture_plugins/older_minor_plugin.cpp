// A plugin that says it was built for ABI minor 0 (2.0), before Mixer::initialize() was
// appended: mixer/test_old_minor, y = w * x per channel. Its initialize() aborts, so a host that
// called a method newer than the plugin's minor would kill the test. With "self_init": true its
// weight is declared InitKind::kComponent, which a 2.0 plugin cannot honour.

#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "mambakit/sdk/sdk.hpp"

namespace older_minor_plugin {

namespace sdk = mambakit::sdk;

class OldMinorMixer final : public sdk::Mixer {
 public:
  explicit OldMinorMixer(const char* config_json) {
    const std::string json = config_json;
    const auto at = json.find("\"d_model\":");
    if (at == std::string::npos) throw std::invalid_argument("test_old_minor: config lacks d_model");
    d_model_ = std::stoll(json.substr(at + 10));
    self_init_ = json.find("\"self_init\":true") != std::string::npos;
  }
  void capabilities(sdk::MixerCapabilities* out) const noexcept override {
    out->devices = sdk::device_bit(sdk::DeviceType::kCpu);
    out->param_dtypes = sdk::dtype_bit(sdk::DType::kF32);
  }
  std::int32_t param_count() const noexcept override { return 1; }
  sdk::Status param_spec(std::int32_t, sdk::ParamSpec* out) const noexcept override {
    sdk::set_tensor_spec(out->tensor, "weight", sdk::DType::kF32, {d_model_});
    out->init = {self_init_ ? sdk::InitKind::kComponent : sdk::InitKind::kOnes};
    return sdk::Status::success();
  }
  std::int32_t state_count() const noexcept override { return 0; }
  sdk::Status state_spec(std::int32_t, std::int64_t, sdk::TensorSpec*) const noexcept override {
    return sdk::Status::error(sdk::StatusCode::kInvalidArgument, "test_old_minor has no state");
  }
  std::int32_t saved_count() const noexcept override { return 0; }
  sdk::Status saved_spec(std::int32_t, std::int64_t, std::int64_t, sdk::TensorSpec*) const noexcept override {
    return sdk::Status::error(sdk::StatusCode::kInvalidArgument, "test_old_minor saves nothing");
  }
  sdk::Status forward(const sdk::Context&, const sdk::MixerForwardArgs& args) noexcept override {
    const float* w = args.params[0].as<const float>();
    const std::int64_t rows = args.x.numel() / d_model_;
    for (std::int64_t r = 0; r < rows; ++r) {
      for (std::int64_t d = 0; d < d_model_; ++d) {
        args.y.as<float>()[r * d_model_ + d] = w[d] * args.x.as<const float>()[r * d_model_ + d];
      }
    }
    return sdk::Status::success();
  }
  sdk::Status backward(const sdk::Context&, const sdk::MixerBackwardArgs&) noexcept override {
    return sdk::Status::error(sdk::StatusCode::kUnsupported, "test_old_minor has no backward");
  }
  sdk::Status step(const sdk::Context&, const sdk::MixerStepArgs&) noexcept override {
    return sdk::Status::error(sdk::StatusCode::kUnsupported, "test_old_minor has no step");
  }
  // Not in a 2.0 plugin's vtable: the host must never call it.
  sdk::Status initialize(const sdk::InitArgs&) noexcept override { std::abort(); }

 private:
  std::int64_t d_model_ = 0;
  bool self_init_ = false;
};

sdk::Status register_components(sdk::Registrar& registrar) noexcept {
  return registrar.add_mixer("test_old_minor", "test: claims ABI 2.0",
                             &sdk::create_component<sdk::Mixer, OldMinorMixer>);
}

}  // namespace older_minor_plugin

namespace mambakit_plugin_entry {
const ::mambakit::sdk::PluginInfo* plugin_info() {
  static const ::mambakit::sdk::PluginInfo info{::mambakit::sdk::kAbiMajor, 0, MAMBAKIT_TOOLCHAIN_TAG, "older-minor",
                                                "1.0.0", &older_minor_plugin::register_components};
  return &info;
}
}  // namespace mambakit_plugin_entry
BOOST_DLL_ALIAS(mambakit_plugin_entry::plugin_info, mambakit_plugin_info)
