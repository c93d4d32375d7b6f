// head/features: feature extraction. Pooling "none" returns the final hidden states per token
// (B, L, D); last, mean or max pool them to one embedding per row (B, D). Backward passes the
// gradient straight through (none) or back through the pooling. No training objective of its
// own (HeadObjective::kNone): its output is what `mambakit embed` returns.
// Options: pooling (mean).
//
// Dimensions: B batch, L length, D d_model.

#include <algorithm>

#include "mambakit/sdk/options.hpp"
#include "mambakit/sdk/sdk.hpp"
#include "mambakit/sdk/util/pooling.hpp"

namespace mambakit::head_features {

class FeaturesHead final : public sdk::Head {
 public:
  explicit FeaturesHead(const char* config_json) {
    const sdk::Options config(config_json, "head/features");
    d_model_ = config.integer("d_model", 1);
    pooling_ = sdk::util::parse_pooling(config.string("pooling", "mean"), "head/features");
    config.reject_unknown({"vocab_size", "tie_embeddings"});
  }

  void capabilities(sdk::HeadCapabilities* out) const noexcept override {
    out->devices = sdk::device_bit(sdk::DeviceType::kCpu);
    out->param_dtypes = sdk::dtype_bit(sdk::DType::kF32) | sdk::dtype_bit(sdk::DType::kF64) |
                        sdk::dtype_bit(sdk::DType::kF16) | sdk::dtype_bit(sdk::DType::kBF16);
    out->backward = true;
  }

  std::int32_t param_count() const noexcept override { return 0; }

  sdk::Status param_spec(std::int32_t, sdk::ParamSpec*) const noexcept override {
    return sdk::Status::error(sdk::StatusCode::kInvalidArgument, "head/features has no parameters");
  }

  sdk::Status output_spec(std::int64_t batch, std::int64_t length, sdk::TensorSpec* out) const noexcept override {
    if (pooling_ == sdk::util::Pooling::kNone) {
      sdk::set_tensor_spec(*out, "features", sdk::DType::kF32, {batch, length, d_model_});
    } else {
      sdk::set_tensor_spec(*out, "features", sdk::DType::kF32, {batch, d_model_});
    }
    return sdk::Status::success();
  }

  sdk::Status forward(const sdk::Context&, const sdk::HeadForwardArgs& args) noexcept override {
    return sdk::guard([&] {
      if (args.hidden.dtype == sdk::DType::kF64) return forward_typed<double>(args);
      return forward_typed<float>(args);
    });
  }

  sdk::Status backward(const sdk::Context&, const sdk::HeadBackwardArgs& args) noexcept override {
    return sdk::guard([&] {
      if (args.hidden.dtype == sdk::DType::kF64) return backward_typed<double>(args);
      return backward_typed<float>(args);
    });
  }

 private:
  template <class T>
  sdk::Status forward_typed(const sdk::HeadForwardArgs& args) const {
    const std::int64_t batch = args.hidden.shape[0], length = args.hidden.shape[1];
    const T* hidden = args.hidden.as<const T>();
    if (pooling_ == sdk::util::Pooling::kNone) {
      std::copy(hidden, hidden + batch * length * d_model_, args.output.as<T>());
    } else {
      sdk::util::pool(pooling_, hidden, args.lengths, args.output.as<T>(), batch, length, d_model_);
    }
    return sdk::Status::success();
  }

  template <class T>
  sdk::Status backward_typed(const sdk::HeadBackwardArgs& args) const {
    if (!args.grad_hidden.present()) return sdk::Status::success();
    const std::int64_t batch = args.hidden.shape[0], length = args.hidden.shape[1];
    const T* grad_output = args.grad_output.as<const T>();
    T* grad_hidden = args.grad_hidden.as<T>();
    if (pooling_ == sdk::util::Pooling::kNone) {
      const std::int64_t count = batch * length * d_model_;
      for (std::int64_t i = 0; i < count; ++i) grad_hidden[i] += grad_output[i];
    } else {
      sdk::util::pool_backward(pooling_, args.hidden.as<const T>(), args.lengths, grad_output, grad_hidden, batch,
                                   length, d_model_);
    }
    return sdk::Status::success();
  }

  std::int64_t d_model_ = 0;
  sdk::util::Pooling pooling_ = sdk::util::Pooling::kMean;
};

namespace {

sdk::Status register_components(sdk::Registrar& registrar) noexcept {
  return registrar.add_head("features", "feature extraction: per-token hidden states, or pooled (last|mean|max)",
                            &sdk::create_component<sdk::Head, FeaturesHead>);
}

}  // namespace
}  // namespace mambakit::head_features

MAMBAKIT_PLUGIN("head-features", "0.1.0", mambakit::head_features::register_components)
