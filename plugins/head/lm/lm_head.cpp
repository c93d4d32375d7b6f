// head/lm: next-token logits, logits = hidden W^T with W (V, D) either its own
// `lm_head.weight` or, tied, the embedding `backbone.embeddings.weight` itself.
// Backward: grad_hidden += grad_logits W and grad_W += grad_logits^T hidden. Tied or not is the
// same code: when tied, the host passes the embedding's gradient as grad_W, so the head's
// contribution adds to the lookup's.
// On CUDA tensors (builds with CUDA) forward and backward run on the GPU, see lm_head_cuda.hpp.
//
// Dimensions: B batch, L length, D d_model, V vocab (padded).

#include "mambakit/sdk/options.hpp"
#include "mambakit/sdk/util/few_rows.hpp"
#include "mambakit/sdk/util/linear.hpp"
#include "mambakit/sdk/sdk.hpp"
#include "mambakit/sdk/util/typed_params.hpp"

#ifdef MAMBAKIT_LM_WITH_CUDA
#include "lm_head_cuda.hpp"
#endif

namespace mambakit::head_lm {

class LmHead final : public sdk::Head {
 public:
  static constexpr std::int64_t kFewRows = 16;

  explicit LmHead(const char* config_json) {
    const sdk::Options config(config_json, "head/lm");
    d_model_ = config.integer("d_model", 1);
    vocab_ = config.integer("vocab_size", 1);
    tied_ = config.boolean("tie_embeddings", true);
    config.reject_unknown();
  }

  void capabilities(sdk::HeadCapabilities* out) const noexcept override {
    out->devices = sdk::device_bit(sdk::DeviceType::kCpu);
#ifdef MAMBAKIT_LM_WITH_CUDA
    out->devices |= sdk::device_bit(sdk::DeviceType::kCuda);  // see lm_head_cuda.hpp
#endif
    out->param_dtypes = sdk::dtype_bit(sdk::DType::kF32) | sdk::dtype_bit(sdk::DType::kF64) |
                        sdk::dtype_bit(sdk::DType::kF16) | sdk::dtype_bit(sdk::DType::kBF16) |
                        sdk::dtype_bit(sdk::DType::kQ8);
    out->backward = true;
    out->objective = sdk::HeadObjective::kNextToken;
  }

  std::int32_t param_count() const noexcept override { return 1; }

  sdk::Status param_spec(std::int32_t index, sdk::ParamSpec* out) const noexcept override {
    if (index != 0) return sdk::Status::error(sdk::StatusCode::kInvalidArgument, "head/lm has one parameter");
    // Tied: the same name as the embedding, so the host shares one tensor between both.
    sdk::set_tensor_spec(out->tensor, tied_ ? "backbone.embeddings.weight" : "lm_head.weight", sdk::DType::kF32,
                         {vocab_, d_model_});
    out->init = {sdk::InitKind::kNormal, 0.0, 0.02};
    out->weight_decay = true;
    out->linear_weight = true;
    return sdk::Status::success();
  }

  sdk::Status output_spec(std::int64_t batch, std::int64_t length, sdk::TensorSpec* out) const noexcept override {
    sdk::set_tensor_spec(*out, "logits", sdk::DType::kF32, {batch, length, vocab_});
    return sdk::Status::success();
  }

  sdk::Status forward(const sdk::Context& context, const sdk::HeadForwardArgs& args) noexcept override {
    if (context.device.type != sdk::DeviceType::kCpu) {
#ifdef MAMBAKIT_LM_WITH_CUDA
      if (context.device.type == sdk::DeviceType::kCuda) {
        return lm_forward_cuda(context, args, d_model_, vocab_, kFewRows);
      }
#endif
      return sdk::Status::error(sdk::StatusCode::kUnsupported, "head/lm was built without support for %s tensors",
                                sdk::device_type_name(context.device.type));
    }
    return sdk::guard([&] {
      const std::int64_t rows = args.hidden.shape[0] * args.hidden.shape[1];
      if (args.hidden.dtype == sdk::DType::kF64) return forward_typed<double>(context, args);
      if (rows <= kFewRows) {  // decode: stream the weights once, row results independent of batch
        sdk::util::linear_few_rows(args.hidden.as<const float>(), d_model_, args.params[0], nullptr,
                                       args.output.as<float>(), vocab_, rows, d_model_, vocab_, context.n_threads,
                                       decode_shares_);
        return sdk::Status::success();
      }
      return forward_typed<float>(context, args);
    });
  }

  sdk::Status backward(const sdk::Context& context, const sdk::HeadBackwardArgs& args) noexcept override {
    MAMBAKIT_RETURN_IF_ERROR(sdk::util::check_trainable("head/lm", args.params, 1, args.hidden.dtype));
    if (context.device.type != sdk::DeviceType::kCpu) {
#ifdef MAMBAKIT_LM_WITH_CUDA
      if (context.device.type == sdk::DeviceType::kCuda) return lm_backward_cuda(context, args, d_model_, vocab_);
#endif
      return sdk::Status::error(sdk::StatusCode::kUnsupported, "head/lm was built without support for %s tensors",
                                sdk::device_type_name(context.device.type));
    }
    return sdk::guard([&] {
      if (args.hidden.dtype == sdk::DType::kF64) return backward_typed<double>(context, args);
      return backward_typed<float>(context, args);
    });
  }

 private:
  template <class T>
  sdk::Status forward_typed(const sdk::Context& context, const sdk::HeadForwardArgs& args) const {
    const std::int64_t rows = args.hidden.shape[0] * args.hidden.shape[1];
    const sdk::util::TypedParams<T> param(context, args.params, 1, "head/lm");
    sdk::util::set_gemm_threads(context.n_threads);
    sdk::util::linear_forward<T>(context.n_threads, args.hidden.as<const T>(), d_model_, param.linear(0), nullptr,
                                 args.output.as<T>(), vocab_, rows, d_model_, vocab_);
    return sdk::Status::success();
  }

  template <class T>
  sdk::Status backward_typed(const sdk::Context& context, const sdk::HeadBackwardArgs& args) const {
    const std::int64_t rows = args.hidden.shape[0] * args.hidden.shape[1];
    const T* grad_logits = args.grad_output.as<const T>();
    sdk::util::set_gemm_threads(context.n_threads);
    if (args.grad_hidden.present()) {
      sdk::util::linear_backward_input(grad_logits, vocab_, args.params[0].as<const T>(), args.grad_hidden.as<T>(),
                                           d_model_, rows, d_model_, vocab_);
    }
    if (args.grad_params != nullptr && args.grad_params[0].present()) {
      sdk::util::linear_backward_params<T>(grad_logits, vocab_, args.hidden.as<const T>(), d_model_,
                                               args.grad_params[0].as<T>(), nullptr, rows, d_model_, vocab_);
    }
    return sdk::Status::success();
  }

  std::int64_t d_model_ = 0, vocab_ = 0;
  bool tied_ = true;
  sdk::util::SpeedShares decode_shares_;  // the decode projection's split between threads
};

namespace {

sdk::Status register_components(sdk::Registrar& registrar) noexcept {
  return registrar.add_head("lm", "causal-LM logits over the vocabulary (tied to the embedding or lm_head.weight)",
                            &sdk::create_component<sdk::Head, LmHead>);
}

}  // namespace
}  // namespace mambakit::head_lm

MAMBAKIT_PLUGIN("head-lm", "0.1.0", mambakit::head_lm::register_components)
