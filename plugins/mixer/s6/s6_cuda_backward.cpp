// S6 backward on the GPU, the equations of s6_backward.cpp step by step (see there), from the
// activations s6_forward_cuda saved (S6Saved: xz, dbc, y):
//
//   out_proj   grad W_out += g_out^T y, grad b_out += sum g_out, g_y = g_out W_out   cuBLAS, column sums
//   recompute  xc = silu(conv(x half of xz)), dt = dt_low W_dt^T, A = -exp(A_log)    conv kernel, cuBLAS
//   scan       g_xc, g_dt, g_A, g_B, g_C, g_D, g_z, g_dt_bias, g_h0                  Context::scan backward
//              grad A_log += g_A * A                                                  kernel
//   dt_proj    grad W_dt += g_dt^T dt_low, g_dt_low = g_dt W_dt                       cuBLAS
//   x_proj     grad W_x += g_dbc^T xc, g_xc += g_dbc W_x                              cuBLAS
//   conv       through the SiLU into the x half of g_xz, conv weight and bias, the     conv backward kernels
//              initial conv state; the final conv state's gradient to the inputs it copied
//   in_proj    grad W_in += g_xz^T x, grad b_in += sum g_xz, grad_x += g_xz W_in      cuBLAS, column sums
//
// g_y, g_xc, g_dt, g_dbc, g_xz and g_A are workspace, zeroed first where the scan adds into
// them. Every gradient output accumulates (+=: GEMMs with beta 1, kernels that add); an absent
// grad_params view is a frozen parameter, skipped. f32 parameters only, as on the CPU.
// Everything is enqueued on the context's stream; nothing waits.
//
// Dimensions: B batch, L length, D d_model, E d_inner, N d_state, R dt_rank, K d_conv,
// W = R + 2N, M = B * L rows.

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <utility>

#include "cublas_linear.hpp"
#include "cublas_linear_backward.hpp"
#include "mambakit/sdk/util/cuda_status.hpp"
#include "mambakit/sdk/scan_calls.hpp"
#include "mambakit/sdk/workspace.hpp"
#include "s6_backward_args.hpp"
#include "s6_cuda.hpp"
#include "s6_cuda_common.hpp"
#include "s6_cuda_launch.hpp"

namespace mambakit::mixer_s6 {

sdk::Status s6_backward_cuda(const S6Dims& dims, const S6ParamIndex& index, const sdk::Context& context,
                             const sdk::MixerBackwardArgs& args) noexcept {
  MAMBAKIT_RETURN_IF_ERROR(sdk::cuda::check_cuda_dtypes(kCudaComponent, args.params, index.count, args.x));
  return sdk::cuda::on_device(kCudaComponent, context, [&]() -> sdk::Status {
    const std::int64_t B = args.x.shape[0], L = args.x.shape[1], M = B * L;
    const std::int64_t D = dims.d_model, E = dims.d_inner, N = dims.d_state, R = dims.dt_rank;
    const std::int64_t W = dims.dbc_width();
    const sdk::Device device = context.device;
    const cudaStream_t stream = sdk::cuda::stream_of(context);
    const sdk::TensorView* params = args.params;
    const S6BackwardStates states(args);
    auto weight = [&](int i) { return params[i].as<const float>(); };
    // The gradient of parameter `i`, or nullptr when it is absent or frozen.
    auto grad_param = [&](int i) { return grad_param_view(args, i).as<float>(); };
    const float* x = args.x.as<const float>();                   // (M, D)
    const float* xz = args.saved[kSavedXz].as<const float>();    // (M, 2E)
    const float* dbc = args.saved[kSavedDbc].as<const float>();  // (M, W)
    const float* y = args.saved[kSavedY].as<const float>();      // (M, E)
    const float* grad_out = args.grad_y.as<const float>();       // (M, D)
    float* grad_a_log = grad_param(index.a_log);

    sdk::WorkspaceArray<float> xc(context, M * E), dt(context, M * E), grad_y(context, M * E),
        grad_xc(context, M * E), grad_dt(context, M * E), grad_dbc(context, M * W), grad_xz(context, M * 2 * E),
        grad_a(context, grad_a_log != nullptr ? E * N : 0);
    const ScanParams scan_params(context, params, dims, index);

    // out_proj: out = y W_out^T + b_out.
    MAMBAKIT_RETURN_IF_ERROR(cuda_common::linear_backward_params_gemm(
        kCudaComponent, context, grad_out, D, y, E, grad_param(index.out_proj_weight),
        grad_param(index.out_proj_bias), M, E, D));
    MAMBAKIT_RETURN_IF_ERROR(cuda_common::linear_backward_input_gemm(
        kCudaComponent, context, grad_out, D, weight(index.out_proj_weight), grad_y.data(), E, M, E, D, 0.f));

    // Recompute the scan's inputs that were not saved.
    ConvArgs conv = conv_args(params, index, dims, xz, xc.data(), B, L);
    conv.initial_state = states.conv.initial.as<const float>();
    MAMBAKIT_CUDA_CHECK(kCudaComponent, launch_causal_conv_silu(conv, stream));
    MAMBAKIT_RETURN_IF_ERROR(cuda_common::linear_gemm(kCudaComponent, context, dbc, W,
                                                      device_param(params, index.dt_proj_weight), DeviceParam{},
                                                      dt.data(), E, M, R, E));
    MAMBAKIT_RETURN_IF_ERROR(scan_params.enqueue(stream));

    for (const auto& [buffer, count] : {std::pair{grad_xc.data(), M * E}, std::pair{grad_dt.data(), M * E},
                                        std::pair{grad_dbc.data(), M * W}, std::pair{grad_xz.data(), M * 2 * E},
                                        std::pair{grad_a.data(), grad_a_log != nullptr ? E * N : 0}}) {
      if (count > 0) {
        MAMBAKIT_CUDA_CHECK(kCudaComponent,
                            cudaMemsetAsync(buffer, 0, static_cast<std::size_t>(count) * sizeof(float), stream));
      }
    }

    // The selective scan.
    sdk::ScanBackwardArgs scan;
    scan.forward = scan_params.inputs(xc.data(), dt.data(), dbc, xz, B, L);
    scan.forward.initial_state = states.ssm.initial;
    scan.grad_y = typed_view(grad_y.data(), {B, L, E}, device);
    scan.grad_final_state = states.ssm.grad_final;
    scan.grad_u = typed_view(grad_xc.data(), {B, L, E}, device);
    scan.grad_delta = typed_view(grad_dt.data(), {B, L, E}, device);
    if (grad_a_log != nullptr) scan.grad_A = typed_view(grad_a.data(), {E, N}, device);
    scan.grad_B = strided_view(grad_dbc.data() + R, B, L, N, W, device);
    scan.grad_C = strided_view(grad_dbc.data() + R + N, B, L, N, W, device);
    scan.grad_D = vector_view(grad_param(index.d), E, device);
    scan.grad_z = strided_view(grad_xz.data() + E, B, L, E, 2 * E, device);
    scan.grad_delta_bias = vector_view(grad_param(index.dt_proj_bias), E, device);
    scan.grad_initial_state = states.ssm.grad_initial;
    MAMBAKIT_RETURN_IF_ERROR(sdk::selective_scan_backward(context, scan));

    if (grad_a_log != nullptr) {
      MAMBAKIT_CUDA_CHECK(kCudaComponent, launch_add_a_log_grad(grad_a.data(), scan_params.A().as<const float>(),
                                                                grad_a_log, E * N, stream));
    }

    // dt_proj: dt = dt_low W_dt^T, dt_low the first R columns of dbc.
    MAMBAKIT_RETURN_IF_ERROR(cuda_common::linear_backward_params_gemm(
        kCudaComponent, context, grad_dt.data(), E, dbc, W, grad_param(index.dt_proj_weight), nullptr, M, R, E));
    MAMBAKIT_RETURN_IF_ERROR(cuda_common::linear_backward_input_gemm(
        kCudaComponent, context, grad_dt.data(), E, weight(index.dt_proj_weight), grad_dbc.data(), W, M, R, E, 1.f));

    // x_proj: dbc = xc W_x^T.
    MAMBAKIT_RETURN_IF_ERROR(cuda_common::linear_backward_params_gemm(
        kCudaComponent, context, grad_dbc.data(), W, xc.data(), E, grad_param(index.x_proj_weight), nullptr, M, E, W));
    MAMBAKIT_RETURN_IF_ERROR(cuda_common::linear_backward_input_gemm(
        kCudaComponent, context, grad_dbc.data(), W, weight(index.x_proj_weight), grad_xc.data(), E, M, E, W, 1.f));

    // conv + SiLU, into the x half of grad_xz.
    ConvBackwardArgs conv_grad;
    conv_grad.forward = conv;
    conv_grad.grad_out = grad_xc.data();
    conv_grad.grad_final_state = states.conv.grad_final.as<const float>();
    conv_grad.grad_input = grad_xz.data();
    conv_grad.grad_input_row_stride = 2 * E;
    conv_grad.grad_weight = grad_param(index.conv_weight);
    conv_grad.grad_bias = grad_param(index.conv_bias);
    conv_grad.grad_initial_state = states.conv.grad_initial.as<float>();
    MAMBAKIT_CUDA_CHECK(kCudaComponent, launch_causal_conv_silu_backward(conv_grad, stream));

    // in_proj: xz = x W_in^T + b_in.
    MAMBAKIT_RETURN_IF_ERROR(cuda_common::linear_backward_params_gemm(
        kCudaComponent, context, grad_xz.data(), 2 * E, x, D, grad_param(index.in_proj_weight),
        grad_param(index.in_proj_bias), M, D, 2 * E));
    if (!args.grad_x.present()) return sdk::Status::success();
    return cuda_common::linear_backward_input_gemm(kCudaComponent, context, grad_xz.data(), 2 * E,
                                                   weight(index.in_proj_weight), args.grad_x.as<float>(), D, M, D,
                                                   2 * E, 1.f);
  });
}

}  // namespace mambakit::mixer_s6
