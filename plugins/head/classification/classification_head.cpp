// head/classification: sequence classification, scores = pool(hidden) W^T + b with pooling
// last, mean or max over each row's valid tokens. Backward goes through the linear layer and
// the pooling (pool_backward). Trained on class labels (HeadObjective::kClassLabels); its
// `dropout` option is declared as input_dropout, which the host applies in training to the
// hidden states this head receives; the head itself is deterministic.
// Options: num_labels (2), pooling (last), dropout (0), labels (names of the classes, or none).
//
// Dimensions: B batch, L length, D d_model, C num_labels.

#include <cmath>
#include <vector>

#include "mambakit/sdk/options.hpp"
#include "mambakit/sdk/util/linear.hpp"
#include "mambakit/sdk/sdk.hpp"
#include "mambakit/sdk/util/pooling.hpp"
#include "mambakit/sdk/util/typed_params.hpp"

namespace mambakit::head_classification {

class ClassificationHead final : public sdk::Head {
 public:
  explicit ClassificationHead(const char* config_json) {
    const sdk::Options config(config_json, "head/classification");
    d_model_ = config.integer("d_model", 1);
    const std::int64_t default_labels = 2;
    num_labels_ = config.integer("num_labels", 1, &default_labels);
    pooling_ = sdk::util::parse_pooling(config.string("pooling", "last"), "head/classification");
    dropout_ = config.number("dropout", 0.0);
    if (!(dropout_ >= 0.0 && dropout_ < 1.0)) {
      throw std::invalid_argument("head/classification: \"dropout\" = " + std::to_string(dropout_) +
                                  " is invalid: must be in [0, 1)");
    }
    labels_ = config.strings("labels");
    if (!labels_.empty() && static_cast<std::int64_t>(labels_.size()) != num_labels_) {
      throw std::invalid_argument("head/classification: \"labels\" has " + std::to_string(labels_.size()) +
                                  " names for " + std::to_string(num_labels_) + " labels: name every label or none");
    }
    config.reject_unknown({"vocab_size", "tie_embeddings"});
    if (pooling_ == sdk::util::Pooling::kNone) {
      throw std::invalid_argument("head/classification: \"pooling\" = \"none\" is invalid: use last, mean or max");
    }
  }

  void capabilities(sdk::HeadCapabilities* out) const noexcept override {
    out->devices = sdk::device_bit(sdk::DeviceType::kCpu);
    out->param_dtypes = sdk::dtype_bit(sdk::DType::kF32) | sdk::dtype_bit(sdk::DType::kF64) |
                        sdk::dtype_bit(sdk::DType::kF16) | sdk::dtype_bit(sdk::DType::kBF16);
    out->backward = true;
    out->objective = sdk::HeadObjective::kClassLabels;
    out->input_dropout = dropout_;
  }

  sdk::Status class_name(std::int32_t index, char* out, std::int32_t capacity) const noexcept override {
    if (capacity < 1) return sdk::Status::success();
    const std::string name = index >= 0 && static_cast<std::size_t>(index) < labels_.size() ? labels_[index] : "";
    const std::size_t count = std::min(name.size(), static_cast<std::size_t>(capacity - 1));
    std::copy_n(name.data(), count, out);
    out[count] = '\0';
    return sdk::Status::success();
  }

  std::int32_t param_count() const noexcept override { return 2; }

  sdk::Status param_spec(std::int32_t index, sdk::ParamSpec* out) const noexcept override {
    const double bound = 1.0 / std::sqrt(static_cast<double>(d_model_));
    if (index == 0) {
      sdk::set_tensor_spec(out->tensor, "classifier.weight", sdk::DType::kF32, {num_labels_, d_model_});
      out->init = {sdk::InitKind::kUniform, -bound, bound};
      out->weight_decay = true;
    } else if (index == 1) {
      sdk::set_tensor_spec(out->tensor, "classifier.bias", sdk::DType::kF32, {num_labels_});
      out->init = {sdk::InitKind::kZeros};
      out->weight_decay = false;
    } else {
      return sdk::Status::error(sdk::StatusCode::kInvalidArgument, "head/classification has two parameters");
    }
    return sdk::Status::success();
  }

  sdk::Status output_spec(std::int64_t batch, std::int64_t, sdk::TensorSpec* out) const noexcept override {
    sdk::set_tensor_spec(*out, "scores", sdk::DType::kF32, {batch, num_labels_});
    return sdk::Status::success();
  }

  sdk::Status forward(const sdk::Context& context, const sdk::HeadForwardArgs& args) noexcept override {
    return sdk::guard([&] {
      if (args.hidden.dtype == sdk::DType::kF64) return forward_typed<double>(context, args);
      return forward_typed<float>(context, args);
    });
  }

  sdk::Status backward(const sdk::Context& context, const sdk::HeadBackwardArgs& args) noexcept override {
    return sdk::guard([&] {
      if (args.hidden.dtype == sdk::DType::kF64) return backward_typed<double>(context, args);
      MAMBAKIT_RETURN_IF_ERROR(sdk::util::check_trainable("head/classification", args.params, 2, args.hidden.dtype));
      return backward_typed<float>(context, args);
    });
  }

 private:
  template <class T>
  sdk::Status forward_typed(const sdk::Context& context, const sdk::HeadForwardArgs& args) const {
    const std::int64_t batch = args.hidden.shape[0], length = args.hidden.shape[1];
    const sdk::util::TypedParams<T> param(context, args.params, 2, "head/classification");
    std::vector<T> pooled(static_cast<std::size_t>(batch * d_model_));
    sdk::util::pool(pooling_, args.hidden.as<const T>(), args.lengths, pooled.data(), batch, length, d_model_);
    sdk::util::linear_forward(static_cast<const T*>(pooled.data()), d_model_, param[0], param[1],
                                  args.output.as<T>(), num_labels_, batch, d_model_, num_labels_);
    return sdk::Status::success();
  }

  template <class T>
  sdk::Status backward_typed(const sdk::Context&, const sdk::HeadBackwardArgs& args) const {
    const std::int64_t batch = args.hidden.shape[0], length = args.hidden.shape[1];
    const T* hidden = args.hidden.as<const T>();
    const T* grad_scores = args.grad_output.as<const T>();  // (B, C)
    std::vector<T> pooled(static_cast<std::size_t>(batch * d_model_));
    sdk::util::pool(pooling_, hidden, args.lengths, pooled.data(), batch, length, d_model_);
    if (args.grad_params != nullptr) {
      T* grad_weight = args.grad_params[0].present() ? args.grad_params[0].as<T>() : nullptr;
      T* grad_bias = args.grad_params[1].present() ? args.grad_params[1].as<T>() : nullptr;
      sdk::util::linear_backward_params(grad_scores, num_labels_, static_cast<const T*>(pooled.data()), d_model_,
                                            grad_weight, grad_bias, batch, d_model_, num_labels_);
    }
    if (args.grad_hidden.present()) {
      std::vector<T> grad_pooled(static_cast<std::size_t>(batch * d_model_));  // (B, D)
      sdk::util::linear_backward_input(grad_scores, num_labels_, args.params[0].as<const T>(), grad_pooled.data(),
                                           d_model_, batch, d_model_, num_labels_, /*accumulate=*/false);
      sdk::util::pool_backward(pooling_, hidden, args.lengths, static_cast<const T*>(grad_pooled.data()),
                                   args.grad_hidden.as<T>(), batch, length, d_model_);
    }
    return sdk::Status::success();
  }

  std::int64_t d_model_ = 0, num_labels_ = 0;
  double dropout_ = 0.0;
  std::vector<std::string> labels_;
  sdk::util::Pooling pooling_ = sdk::util::Pooling::kLast;
};

namespace {

sdk::Status register_components(sdk::Registrar& registrar) noexcept {
  return registrar.add_head("classification", "sequence classification: pooled hidden state (last|mean|max) -> linear",
                            &sdk::create_component<sdk::Head, ClassificationHead>);
}

}  // namespace
}  // namespace mambakit::head_classification

MAMBAKIT_PLUGIN("head-classification", "0.1.0", mambakit::head_classification::register_components)
