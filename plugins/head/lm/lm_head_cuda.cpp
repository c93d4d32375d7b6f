// head/lm on the GPU: logits = hidden W^T, see lm_head_cuda.hpp.

#include "lm_head_cuda.hpp"

#include "cublas_linear.hpp"
#include "cuda_status.hpp"
#include "linear_launch.hpp"

namespace mambakit::head_lm {

namespace {
constexpr const char* kComponent = "head/lm";
}  // namespace

sdk::Status lm_forward_cuda(const sdk::Context& context, const sdk::HeadForwardArgs& args, std::int64_t d_model,
                            std::int64_t vocab, std::int64_t few_rows) noexcept {
  const sdk::DType dtype = args.params[0].dtype;
  if (dtype != sdk::DType::kF32 && dtype != sdk::DType::kF16 && dtype != sdk::DType::kBF16) {
    return sdk::Status::error(sdk::StatusCode::kUnsupported,
                              "head/lm on cuda: the weight is %s; f32, f16 or bf16 is required", sdk::dtype_name(dtype));
  }
  if (args.hidden.dtype != sdk::DType::kF32) {
    return sdk::Status::error(sdk::StatusCode::kUnsupported, "head/lm on cuda: hidden is %s; f32 is required",
                              sdk::dtype_name(args.hidden.dtype));
  }
  return cuda_common::on_device(kComponent, context, [&]() -> sdk::Status {
    const std::int64_t rows = args.hidden.shape[0] * args.hidden.shape[1];
    const float* hidden = args.hidden.as<const float>();
    float* logits = args.output.as<float>();
    const cuda_common::DeviceParam weight = cuda_common::device_param(args.params[0]);
    if (rows > few_rows) {
      return cuda_common::linear_gemm(kComponent, context, hidden, d_model, weight, cuda_common::DeviceParam{}, logits,
                                      vocab, rows, d_model, vocab);
    }
    const cuda_common::FewRowsArgs few = cuda_common::few_rows_args(hidden, d_model, weight, cuda_common::DeviceParam{},
                                                                    logits, vocab, rows, d_model, vocab);
    MAMBAKIT_CUDA_CHECK(kComponent, cuda_common::launch_linear_few_rows(few, cuda_common::stream_of(context)));
    return sdk::Status::success();
  });
}

}  // namespace mambakit::head_lm
