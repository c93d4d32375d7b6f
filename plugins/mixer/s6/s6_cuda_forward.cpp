// S6 forward over whole sequences on the GPU (prefill), the equations of s6_forward.cpp:
//
//   xz = in_proj(x)                 (M, 2E): x half | z half      M = B * L rows    cuBLAS
//   xc = silu(conv1d(x half) + b)   (M, E), final conv state                         conv kernel
//   dbc = x_proj(xc)                (M, R + 2N): dt_low | B | C                      cuBLAS
//   dt = dt_proj(dt_low)            (M, E), reading dt_low in place (row stride W)   cuBLAS
//   y = scan(xc, dt, -exp(A_log), B, C, D, z, dt_proj.bias), final SSM state       Context::scan
//   out = out_proj(y)               (M, D)                                           cuBLAS
//
// B, C and z are strided views into dbc and xz, as on the CPU. xz, dbc and y go to the saved
// activations when the caller passes them (training; s6_cuda_backward.cpp reads them), to
// workspace otherwise. 16-bit weight matrices are widened per GEMM into workspace (see
// cublas_linear.hpp). Everything is enqueued on the context's stream; nothing waits.
//
// Dimensions: B batch, L length, D d_model, E d_inner, N d_state, R dt_rank, K d_conv, W = R + 2N.

#include "cublas_linear.hpp"
#include "mambakit/sdk/util/cuda_status.hpp"
#include "mambakit/sdk/scan_calls.hpp"
#include "mambakit/sdk/workspace.hpp"
#include "s6_cuda.hpp"
#include "s6_cuda_common.hpp"
#include "s6_cuda_launch.hpp"

namespace mambakit::mixer_s6 {

sdk::Status s6_forward_cuda(const S6Dims& dims, const S6ParamIndex& index, const sdk::Context& context,
                            const sdk::MixerForwardArgs& args) noexcept {
  MAMBAKIT_RETURN_IF_ERROR(sdk::cuda::check_cuda_dtypes(kCudaComponent, args.params, index.count, args.x));
  return sdk::cuda::on_device(kCudaComponent, context, [&]() -> sdk::Status {
    const std::int64_t B = args.x.shape[0], L = args.x.shape[1], M = B * L;
    const std::int64_t D = dims.d_model, E = dims.d_inner, R = dims.dt_rank;
    const std::int64_t W = dims.dbc_width();
    const sdk::Device device = context.device;
    const cudaStream_t stream = sdk::cuda::stream_of(context);
    const sdk::TensorView* params = args.params;

    const bool save = args.saved != nullptr;
    sdk::WorkspaceArray<float> xz_scratch(context, save ? 0 : M * 2 * E), dbc_scratch(context, save ? 0 : M * W),
        y_scratch(context, save ? 0 : M * E), xc(context, M * E), dt(context, M * E);
    float* const xz = save ? args.saved[kSavedXz].as<float>() : xz_scratch.data();     // (M, 2E)
    float* const dbc = save ? args.saved[kSavedDbc].as<float>() : dbc_scratch.data();  // (M, W)
    float* const y = save ? args.saved[kSavedY].as<float>() : y_scratch.data();        // (M, E)
    const ScanParams scan_params(context, params, dims, index);

    MAMBAKIT_RETURN_IF_ERROR(cuda_common::linear_gemm(kCudaComponent, context, args.x.as<const float>(), D,
                                                      device_param(params, index.in_proj_weight),
                                                      device_param(params, index.in_proj_bias), xz, 2 * E, M,
                                                      D, 2 * E));
    ConvArgs conv = conv_args(params, index, dims, xz, xc.data(), B, L);
    conv.initial_state = args.initial_state != nullptr ? args.initial_state[kConvState].as<const float>() : nullptr;
    conv.final_state = args.final_state != nullptr ? args.final_state[kConvState].as<float>() : nullptr;
    MAMBAKIT_CUDA_CHECK(kCudaComponent, launch_causal_conv_silu(conv, stream));
    MAMBAKIT_RETURN_IF_ERROR(cuda_common::linear_gemm(kCudaComponent, context, xc.data(), E,
                                                      device_param(params, index.x_proj_weight), DeviceParam{},
                                                      dbc, W, M, E, W));
    MAMBAKIT_RETURN_IF_ERROR(cuda_common::linear_gemm(kCudaComponent, context, dbc, W,
                                                      device_param(params, index.dt_proj_weight), DeviceParam{},
                                                      dt.data(), E, M, R, E));
    MAMBAKIT_RETURN_IF_ERROR(scan_params.enqueue(stream));

    sdk::ScanForwardArgs scan = scan_params.inputs(xc.data(), dt.data(), dbc, xz, B, L);
    if (args.initial_state != nullptr) scan.initial_state = args.initial_state[kSsmState];
    if (args.final_state != nullptr) scan.final_state = args.final_state[kSsmState];
    scan.y = typed_view(y, {B, L, E}, device);
    MAMBAKIT_RETURN_IF_ERROR(sdk::selective_scan_forward(context, scan, args.saved != nullptr));

    return cuda_common::linear_gemm(kCudaComponent, context, y, E, device_param(params, index.out_proj_weight),
                                    device_param(params, index.out_proj_bias), args.y.as<float>(), D, M, E, D);
  });
}

}  // namespace mambakit::mixer_s6
