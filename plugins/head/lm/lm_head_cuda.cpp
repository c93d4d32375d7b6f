// head/lm on the GPU: logits = hidden W^T and its backward, see lm_head_cuda.hpp.

#include "lm_head_cuda.hpp"

#include "cublas_linear.hpp"
#include "cublas_linear_backward.hpp"
#include "mambakit/sdk/util/cuda_status.hpp"
#include "few_rows_linear.hpp"

namespace mambakit::head_lm {

namespace {
constexpr const char* kComponent = "head/lm";
}  // namespace

sdk::Status lm_forward_cuda(const sdk::Context& context, const sdk::HeadForwardArgs& args, std::int64_t d_model,
                            std::int64_t vocab, std::int64_t few_rows) noexcept {
  MAMBAKIT_RETURN_IF_ERROR(sdk::cuda::check_cuda_dtypes(kComponent, args.params, 1, args.hidden));
  return sdk::cuda::on_device(kComponent, context, [&]() -> sdk::Status {
    const std::int64_t rows = args.hidden.shape[0] * args.hidden.shape[1];
    const float* hidden = args.hidden.as<const float>();
    float* logits = args.output.as<float>();
    const cuda_common::DeviceParam weight = cuda_common::device_param(args.params[0]);
    const auto linear = rows > few_rows ? cuda_common::linear_gemm : cuda_common::linear_few_rows;
    return linear(kComponent, context, hidden, d_model, weight, cuda_common::DeviceParam{}, logits, vocab, rows, d_model,
                  vocab);
  });
}

sdk::Status lm_backward_cuda(const sdk::Context& context, const sdk::HeadBackwardArgs& args, std::int64_t d_model,
                             std::int64_t vocab) noexcept {
  MAMBAKIT_RETURN_IF_ERROR(sdk::cuda::check_cuda_dtypes(kComponent, args.params, 1, args.hidden));
  return sdk::cuda::on_device(kComponent, context, [&]() -> sdk::Status {
    const std::int64_t rows = args.hidden.shape[0] * args.hidden.shape[1];
    const float* grad_logits = args.grad_output.as<const float>();
    if (args.grad_hidden.present()) {
      MAMBAKIT_RETURN_IF_ERROR(cuda_common::linear_backward_input_gemm(
          kComponent, context, grad_logits, vocab, args.params[0].as<const float>(), args.grad_hidden.as<float>(),
          d_model, rows, d_model, vocab, 1.f));
    }
    if (args.grad_params == nullptr || !args.grad_params[0].present()) return sdk::Status::success();
    return cuda_common::linear_backward_params_gemm(kComponent, context, grad_logits, vocab,
                                                    args.hidden.as<const float>(), d_model,
                                                    args.grad_params[0].as<float>(), nullptr, rows, d_model, vocab);
  });
}

}  // namespace mambakit::head_lm
