// The S6 one-token decode step on the GPU, the equations of s6_step.cpp, with no cuBLAS and
// no synchronisation so that the host can capture it into a CUDA graph:
//
//   xz = in_proj(x)          (B, 2E)    few-rows kernel, weights read in their stored type
//   xc = conv step(x half)   (B, E)     conv state shifted in place
//   dbc = x_proj(xc)         (B, W)     few-rows kernel
//   dt = dt_proj(dt_low)     (B, E)     few-rows kernel reading dt_low in place (row stride W)
//   y = scan step(...)       (B, E)     Context::scan's step, SSM state in place
//   out = out_proj(y)        (B, D)     few-rows kernel
//
// Dimensions: B batch, D d_model, E d_inner, N d_state, R dt_rank, K d_conv, W = R + 2N.

#include "mambakit/sdk/util/cuda_status.hpp"
#include "few_rows_linear.hpp"
#include "mambakit/sdk/scan_calls.hpp"
#include "mambakit/sdk/workspace.hpp"
#include "s6_cuda.hpp"
#include "s6_cuda_common.hpp"
#include "s6_cuda_launch.hpp"

namespace mambakit::mixer_s6 {

sdk::Status s6_step_cuda(const S6Dims& dims, const S6ParamIndex& index, const sdk::Context& context,
                         const sdk::MixerStepArgs& args) noexcept {
  MAMBAKIT_RETURN_IF_ERROR(sdk::cuda::check_cuda_dtypes(kCudaComponent, args.params, index.count, args.x));
  return sdk::cuda::on_device(kCudaComponent, context, [&]() -> sdk::Status {
    const std::int64_t B = args.x.shape[0];
    const std::int64_t D = dims.d_model, E = dims.d_inner, N = dims.d_state, R = dims.dt_rank, K = dims.d_conv;
    const std::int64_t W = dims.dbc_width();
    const sdk::Device device = context.device;
    const cudaStream_t stream = sdk::cuda::stream_of(context);
    const sdk::TensorView* params = args.params;

    sdk::WorkspaceArray<float> xz(context, B * 2 * E), xc(context, B * E), dbc(context, B * W), dt(context, B * E),
        y(context, B * E);
    const ScanParams scan_params(context, params, dims, index);

    using cuda_common::linear_few_rows;
    MAMBAKIT_RETURN_IF_ERROR(linear_few_rows(kCudaComponent, context, args.x.as<const float>(), D,
                                             device_param(params, index.in_proj_weight),
                                             device_param(params, index.in_proj_bias), xz.data(), 2 * E, B, D, 2 * E));
    ConvStepArgs conv;
    conv.input = xz.data();
    conv.input_row_stride = 2 * E;
    conv.weight = device_param(params, index.conv_weight);
    conv.bias = device_param(params, index.conv_bias);
    conv.state = args.state[kConvState].as<float>();
    conv.out = xc.data();
    conv.batch = B;
    conv.d_inner = E;
    conv.d_conv = K;
    MAMBAKIT_CUDA_CHECK(kCudaComponent, launch_causal_conv_silu_step(conv, stream));
    MAMBAKIT_RETURN_IF_ERROR(linear_few_rows(kCudaComponent, context, xc.data(), E,
                                             device_param(params, index.x_proj_weight), DeviceParam{}, dbc.data(), W,
                                             B, E, W));
    MAMBAKIT_RETURN_IF_ERROR(linear_few_rows(kCudaComponent, context, dbc.data(), W,
                                             device_param(params, index.dt_proj_weight), DeviceParam{}, dt.data(), E,
                                             B, R, E));
    MAMBAKIT_RETURN_IF_ERROR(scan_params.enqueue(stream));

    sdk::ScanStepArgs scan;
    scan.u = typed_view(xc.data(), {B, E}, device);
    scan.delta = typed_view(dt.data(), {B, E}, device);
    scan.A = scan_params.A();
    scan.B = rows_view(dbc.data() + R, B, N, W, device);
    scan.C = rows_view(dbc.data() + R + N, B, N, W, device);
    scan.D = scan_params.D();
    scan.z = rows_view(xz.data() + E, B, E, 2 * E, device);
    scan.delta_bias = scan_params.delta_bias();
    scan.delta_softplus = true;
    scan.state = args.state[kSsmState];
    scan.y = typed_view(y.data(), {B, E}, device);
    MAMBAKIT_RETURN_IF_ERROR(sdk::selective_scan_step(context, scan));

    return linear_few_rows(kCudaComponent, context, y.data(), E, device_param(params, index.out_proj_weight),
                           device_param(params, index.out_proj_bias), args.y.as<float>(), D, B, E, D);
  });
}

}  // namespace mambakit::mixer_s6
