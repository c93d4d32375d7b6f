// mixer/test_faulty and head/test_faulty_head: correct unless their "fault" option names one way
// a plugin can go wrong, so the tests can check that the host turns each into an error naming
// the component and stays usable.
//
// mixer/test_faulty: y = w * x per channel; its state is the last input of each row, and it
// saves its input for backward. Dimensions: B batch, L length, D d_model.
//   Methods that throw inside sdk::guard (as a plugin author is told to): throw_param_spec,
//   throw_state_spec, throw_saved_spec, throw_forward, throw_backward, throw_step,
//   throw_initialize. A failed Status without an exception: error_forward.
//   Counts the host must not trust: negative_param_count, huge_param_count,
//   negative_state_count, huge_saved_count.
//   Parameter specs: negative_dimension, over_max_rank, negative_rank, overflowing_dimension
//   (its element count overflows int64), huge_dimension (2^48 elements), unnamed_parameter,
//   unterminated_name, duplicate_names, f16_parameter, unknown_init.
//   State and saved specs: wrong_state_batch, f64_state, huge_state, negative_saved_dimension.
//   Capabilities: no_cpu_device, no_param_dtypes.
// head/test_faulty_head: next-token logits (B, L, V) equal to a bias (V) at every position.
//   throw_param_spec, throw_output_spec, throw_forward, throw_backward, negative_param_count,
//   over_max_rank and negative_dimension (of its output), wrong_output_shape ((B, V)),
//   bad_dropout (an input dropout of 1.5), no_cpu_device, no_param_dtypes.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <stdexcept>
#include <string>

#include "mambakit/sdk/options.hpp"
#include "mambakit/sdk/sdk.hpp"

namespace faulty_plugin {

namespace sdk = mambakit::sdk;

/// The fault a component's "fault" option names; throws std::invalid_argument for one not in
/// `known`, so that a test's typo does not pass as a working component.
std::string read_fault(const sdk::Options& options, std::initializer_list<const char*> known) {
  const std::string fault = options.string("fault", "none");
  if (fault != "none" && std::none_of(known.begin(), known.end(), [&](const char* name) { return fault == name; })) {
    throw std::invalid_argument("unknown fault '" + fault + "'");
  }
  return fault;
}

/// Throws, as a faulty method body would, when `fault` is `wanted`.
void throw_if(const std::string& fault, const char* wanted, const char* method) {
  if (fault == wanted) throw std::runtime_error(std::string(method) + " failed on purpose");
}

class FaultyMixer final : public sdk::Mixer {
 public:
  explicit FaultyMixer(const char* config_json) {
    const sdk::Options options(config_json, "mixer/test_faulty");
    d_model_ = options.integer("d_model", 1);
    fault_ = read_fault(options, {"throw_param_spec", "throw_state_spec", "throw_saved_spec", "throw_forward",
                                  "throw_backward", "throw_step", "throw_initialize", "error_forward",
                                  "negative_param_count", "huge_param_count", "negative_state_count",
                                  "huge_saved_count", "negative_dimension", "over_max_rank", "negative_rank",
                                  "overflowing_dimension", "huge_dimension", "unnamed_parameter", "unterminated_name",
                                  "duplicate_names", "f16_parameter", "unknown_init", "wrong_state_batch", "f64_state",
                                  "huge_state", "negative_saved_dimension", "no_cpu_device", "no_param_dtypes"});
    options.reject_unknown({"n_layer", "layer_index"});
  }

  void capabilities(sdk::MixerCapabilities* out) const noexcept override {
    out->devices = sdk::device_bit(fault_ == "no_cpu_device" ? sdk::DeviceType::kCuda : sdk::DeviceType::kCpu);
    out->param_dtypes = fault_ == "no_param_dtypes" ? 0 : sdk::dtype_bit(sdk::DType::kF32);
    out->backward = true;
    out->step = true;
  }

  std::int32_t param_count() const noexcept override {
    if (fault_ == "negative_param_count") return -1;
    if (fault_ == "huge_param_count") return 1 << 30;
    return fault_ == "duplicate_names" ? 2 : 1;
  }

  sdk::Status param_spec(std::int32_t, sdk::ParamSpec* out) const noexcept override {
    return sdk::guard([&] {
      throw_if(fault_, "throw_param_spec", "param_spec");
      sdk::TensorSpec& tensor = out->tensor;
      sdk::set_tensor_spec(tensor, "weight", sdk::DType::kF32, {d_model_});
      out->init = {fault_ == "throw_initialize" ? sdk::InitKind::kComponent : sdk::InitKind::kOnes};
      if (fault_ == "negative_dimension") sdk::set_tensor_spec(tensor, "weight", sdk::DType::kF32, {d_model_, -3});
      if (fault_ == "over_max_rank") tensor.rank = sdk::kMaxRank + 1;
      if (fault_ == "negative_rank") tensor.rank = -1;
      if (fault_ == "overflowing_dimension") {
        sdk::set_tensor_spec(tensor, "weight", sdk::DType::kF32, {std::int64_t{1} << 40, std::int64_t{1} << 40});
      }
      if (fault_ == "huge_dimension") {
        sdk::set_tensor_spec(tensor, "weight", sdk::DType::kF32, {std::int64_t{1} << 24, std::int64_t{1} << 24});
      }
      if (fault_ == "unnamed_parameter") tensor.name[0] = '\0';
      if (fault_ == "unterminated_name") std::memset(tensor.name, 'w', sizeof(tensor.name));
      if (fault_ == "f16_parameter") tensor.dtype = sdk::DType::kF16;
      if (fault_ == "unknown_init") out->init.kind = static_cast<sdk::InitKind>(99);
      return sdk::Status::success();
    });
  }

  std::int32_t state_count() const noexcept override { return fault_ == "negative_state_count" ? -2 : 1; }

  sdk::Status state_spec(std::int32_t, std::int64_t batch, sdk::TensorSpec* out) const noexcept override {
    return sdk::guard([&] {
      throw_if(fault_, "throw_state_spec", "state_spec");
      sdk::set_tensor_spec(*out, "last", sdk::DType::kF32, {batch, d_model_});
      if (fault_ == "wrong_state_batch") sdk::set_tensor_spec(*out, "last", sdk::DType::kF32, {batch + 1, d_model_});
      if (fault_ == "f64_state") out->dtype = sdk::DType::kF64;
      if (fault_ == "huge_state") {
        sdk::set_tensor_spec(*out, "last", sdk::DType::kF32, {batch, std::int64_t{1} << 24, std::int64_t{1} << 24});
      }
      return sdk::Status::success();
    });
  }

  std::int32_t saved_count() const noexcept override { return fault_ == "huge_saved_count" ? 1 << 30 : 1; }

  sdk::Status saved_spec(std::int32_t, std::int64_t batch, std::int64_t length,
                         sdk::TensorSpec* out) const noexcept override {
    return sdk::guard([&] {
      throw_if(fault_, "throw_saved_spec", "saved_spec");
      const std::int64_t width = fault_ == "negative_saved_dimension" ? -d_model_ : d_model_;
      sdk::set_tensor_spec(*out, "x", sdk::DType::kF32, {batch, length, width});
      return sdk::Status::success();
    });
  }

  sdk::Status forward(const sdk::Context&, const sdk::MixerForwardArgs& args) noexcept override {
    return sdk::guard([&] {
      throw_if(fault_, "throw_forward", "forward");
      if (fault_ == "error_forward") {
        return sdk::Status::error(sdk::StatusCode::kUnsupported, "forward refuses on purpose");
      }
      const std::int64_t B = args.x.shape[0], L = args.x.shape[1], D = d_model_;
      const float* w = args.params[0].as<const float>();
      const float* x = args.x.as<const float>();
      float* y = args.y.as<float>();
      for (std::int64_t i = 0; i < B * L * D; ++i) y[i] = w[i % D] * x[i];
      if (args.saved != nullptr) std::copy(x, x + B * L * D, args.saved[0].as<float>());
      if (args.final_state != nullptr) {
        for (std::int64_t b = 0; b < B; ++b) {
          std::copy(x + (b * L + L - 1) * D, x + (b * L + L) * D, args.final_state[0].as<float>() + b * D);
        }
      }
      return sdk::Status::success();
    });
  }

  sdk::Status backward(const sdk::Context&, const sdk::MixerBackwardArgs& args) noexcept override {
    return sdk::guard([&] {
      throw_if(fault_, "throw_backward", "backward");
      const std::int64_t M = args.x.shape[0] * args.x.shape[1], D = d_model_;
      const float* w = args.params[0].as<const float>();
      const float* x = args.x.as<const float>();
      const float* grad_y = args.grad_y.as<const float>();
      float* grad_x = args.grad_x.as<float>();
      float* grad_w = args.grad_params[0].as<float>();
      for (std::int64_t i = 0; i < M * D; ++i) {
        grad_x[i] += w[i % D] * grad_y[i];
        if (grad_w != nullptr) grad_w[i % D] += grad_y[i] * x[i];
      }
      return sdk::Status::success();
    });
  }

  sdk::Status step(const sdk::Context&, const sdk::MixerStepArgs& args) noexcept override {
    return sdk::guard([&] {
      throw_if(fault_, "throw_step", "step");
      const std::int64_t B = args.x.shape[0], D = d_model_;
      const float* w = args.params[0].as<const float>();
      const float* x = args.x.as<const float>();
      for (std::int64_t i = 0; i < B * D; ++i) {
        args.y.as<float>()[i] = w[i % D] * x[i];
        args.state[0].as<float>()[i] = x[i];
      }
      return sdk::Status::success();
    });
  }

  sdk::Status initialize(const sdk::InitArgs& args) noexcept override {
    return sdk::guard([&] {
      throw_if(fault_, "throw_initialize", "initialize");
      (void)args;
      return sdk::Status::success();
    });
  }

 private:
  std::int64_t d_model_ = 0;
  std::string fault_;
};

class FaultyHead final : public sdk::Head {
 public:
  explicit FaultyHead(const char* config_json) {
    const sdk::Options options(config_json, "head/test_faulty_head");
    options.integer("d_model", 1);
    vocab_ = options.integer("vocab_size", 1);
    fault_ = read_fault(options, {"throw_param_spec", "throw_output_spec", "throw_forward", "throw_backward",
                                  "negative_param_count", "over_max_rank", "negative_dimension", "wrong_output_shape",
                                  "bad_dropout", "no_cpu_device", "no_param_dtypes"});
    options.reject_unknown({"tie_embeddings"});
  }

  void capabilities(sdk::HeadCapabilities* out) const noexcept override {
    out->devices = sdk::device_bit(fault_ == "no_cpu_device" ? sdk::DeviceType::kCuda : sdk::DeviceType::kCpu);
    out->param_dtypes = fault_ == "no_param_dtypes" ? 0 : sdk::dtype_bit(sdk::DType::kF32);
    out->backward = true;
    out->objective = sdk::HeadObjective::kNextToken;
    out->input_dropout = fault_ == "bad_dropout" ? 1.5 : 0.0;
  }

  std::int32_t param_count() const noexcept override { return fault_ == "negative_param_count" ? -1 : 1; }

  sdk::Status param_spec(std::int32_t, sdk::ParamSpec* out) const noexcept override {
    return sdk::guard([&] {
      throw_if(fault_, "throw_param_spec", "param_spec");
      sdk::set_tensor_spec(out->tensor, "lm_head.bias", sdk::DType::kF32, {vocab_});
      out->init = {sdk::InitKind::kZeros};
      return sdk::Status::success();
    });
  }

  sdk::Status output_spec(std::int64_t batch, std::int64_t length, sdk::TensorSpec* out) const noexcept override {
    return sdk::guard([&] {
      throw_if(fault_, "throw_output_spec", "output_spec");
      sdk::set_tensor_spec(*out, "logits", sdk::DType::kF32, {batch, length, vocab_});
      if (fault_ == "over_max_rank") out->rank = sdk::kMaxRank + 1;
      if (fault_ == "negative_dimension") sdk::set_tensor_spec(*out, "logits", sdk::DType::kF32, {batch, length, -vocab_});
      if (fault_ == "wrong_output_shape") sdk::set_tensor_spec(*out, "logits", sdk::DType::kF32, {batch, vocab_});
      return sdk::Status::success();
    });
  }

  sdk::Status forward(const sdk::Context&, const sdk::HeadForwardArgs& args) noexcept override {
    return sdk::guard([&] {
      throw_if(fault_, "throw_forward", "forward");
      const float* bias = args.params[0].as<const float>();
      float* output = args.output.as<float>();
      for (std::int64_t i = 0; i < args.output.numel(); ++i) output[i] = bias[i % vocab_];
      return sdk::Status::success();
    });
  }

  sdk::Status backward(const sdk::Context&, const sdk::HeadBackwardArgs& args) noexcept override {
    return sdk::guard([&] {
      throw_if(fault_, "throw_backward", "backward");
      const float* grad_output = args.grad_output.as<const float>();
      float* grad_bias = args.grad_params[0].as<float>();
      if (grad_bias == nullptr) return sdk::Status::success();
      for (std::int64_t i = 0; i < args.grad_output.numel(); ++i) grad_bias[i % vocab_] += grad_output[i];
      return sdk::Status::success();
    });
  }

 private:
  std::int64_t vocab_ = 0;
  std::string fault_;
};

sdk::Status register_components(sdk::Registrar& registrar) noexcept {
  MAMBAKIT_RETURN_IF_ERROR(registrar.add_mixer("test_faulty", "test: y = w x with a chosen fault",
                                               &sdk::create_component<sdk::Mixer, FaultyMixer>));
  return registrar.add_head("test_faulty_head", "test: constant logits with a chosen fault",
                            &sdk::create_component<sdk::Head, FaultyHead>);
}

}  // namespace faulty_plugin

MAMBAKIT_PLUGIN("test-faulty", "1.0.0", faulty_plugin::register_components)
