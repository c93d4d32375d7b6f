// S6 backward: the gradient of s6_forward (see s6_forward.cpp for the forward equations), in
// reverse order of the forward, from the activations forward saved (S6Saved: xz, dbc, y):
//
//   out_proj:  grad W_out += g_out^T y,  grad b_out += sum g_out,  g_y = g_out W_out
//   recompute  xc = silu(conv(x half of xz)),  dt = dt_low W_dt^T,  A = -exp(A_log)
//   scan:      the backend's backward gives g_xc, g_dt (before bias and softplus), g_A, g_B,
//              g_C, g_D, g_z, g_dt_bias and g_h0 from g_y and the final SSM state's gradient;
//              grad A_log += g_A * A  (dA/dA_log = -exp(A_log) = A)
//   dt_proj:   grad W_dt += g_dt^T dt_low,  g_dt_low = g_dt W_dt
//   x_proj:    grad W_x += g_dbc^T xc,  g_xc += g_dbc W_x      (g_dbc = g_dt_low | g_B | g_C)
//   conv:      through the SiLU and the depthwise conv into the x half of g_xz, the conv
//              weight and bias, and the initial conv state; the final conv state's gradient
//              goes to the inputs it copied (the last K conv inputs)
//   in_proj:   grad W_in += g_xz^T x,  grad b_in += sum g_xz,  grad_x += g_xz W_in
//
// Every gradient output accumulates (+=). An absent grad_params view is a frozen parameter and
// its gradient is skipped; an absent initial state is a constant zero state and gets no
// gradient (as in the scan backends).
//
// Runs in the parameters' type: f32 or f64 (half-precision parameters are for inference only).
//
// Dimensions: B batch, L length, D d_model, E d_inner, N d_state, R dt_rank, K d_conv,
// W = R + 2N, M = B * L rows.

#include <algorithm>

#include "mambakit/sdk/util/causal_conv.hpp"
#include "mambakit/sdk/util/linear.hpp"
#include "mambakit/sdk/guard.hpp"
#include "mambakit/sdk/scan_calls.hpp"
#include "mambakit/sdk/workspace.hpp"
#include "s6_backward_args.hpp"
#include "s6_mixer.hpp"
#include "s6_views.hpp"

namespace mambakit::mixer_s6 {

namespace {

template <class T>
void fill_zero(T* data, std::int64_t count) {
  std::fill(data, data + count, T(0));
}

template <class T>
sdk::Status backward_typed(const S6Dims& dims, const S6ParamIndex& index, const sdk::Context& context,
                           const sdk::MixerBackwardArgs& args) {
  const std::int64_t B = args.x.shape[0], L = args.x.shape[1], M = B * L;
  const std::int64_t D = dims.d_model, E = dims.d_inner, N = dims.d_state, R = dims.dt_rank, K = dims.d_conv;
  const std::int64_t W = dims.dbc_width();
  sdk::util::set_gemm_threads(context.n_threads);

  const sdk::util::TypedParams<T> param(context, args.params, index.count, "mixer/s6 backward");
  // The gradient of parameter `i`, or nullptr when it is absent or frozen.
  auto grad_param = [&](int i) { return grad_param_view(args, i).as<T>(); };
  const T* xz = args.saved[kSavedXz].as<const T>();    // (M, 2E)
  const T* dbc = args.saved[kSavedDbc].as<const T>();  // (M, W)
  const T* y = args.saved[kSavedY].as<const T>();      // (M, E)
  const T* grad_out = args.grad_y.as<const T>();       // (M, D)

  const S6BackwardStates states(args);
  T* grad_a_log = grad_param(index.a_log);

  sdk::WorkspaceArray<T> xc(context, M * E), dt(context, M * E), a(context, E * N),
      grad_a(context, grad_a_log != nullptr ? E * N : 0), grad_y(context, M * E), grad_xc(context, M * E),
      grad_dt(context, M * E), grad_dbc(context, M * W), grad_xz(context, M * 2 * E);

  // out_proj.
  sdk::util::linear_backward_params(grad_out, D, y, E, grad_param(index.out_proj_weight),
                                        grad_param(index.out_proj_bias), M, E, D);
  sdk::util::linear_backward_input(grad_out, D, param[index.out_proj_weight], grad_y.data(), E, M, E, D,
                                       /*accumulate=*/false);

  // Recompute the scan's inputs that were not saved.
  sdk::util::causal_conv_silu(xz, 2 * E, param[index.conv_weight], param[index.conv_bias], states.conv.initial.as<const T>(),
                   static_cast<T*>(nullptr), xc.data(), B, L, E, K, context.n_threads);
  sdk::util::linear_forward(dbc, W, param[index.dt_proj_weight], nullptr, dt.data(), E, M, R, E);
  negative_exp(param[index.a_log], a.data(), E * N);

  fill_zero(grad_xc.data(), M * E);
  fill_zero(grad_dt.data(), M * E);
  fill_zero(grad_dbc.data(), M * W);
  fill_zero(grad_xz.data(), M * 2 * E);
  if (grad_a_log != nullptr) fill_zero(grad_a.data(), E * N);

  // The selective scan.
  sdk::ScanBackwardArgs scan;
  scan.forward.u = typed_view(xc.data(), {B, L, E});
  scan.forward.delta = typed_view(dt.data(), {B, L, E});
  scan.forward.A = typed_view(a.data(), {E, N});
  scan.forward.B = strided_view(dbc + R, B, L, N, W);
  scan.forward.C = strided_view(dbc + R + N, B, L, N, W);
  scan.forward.D = vector_view(param[index.d], E);
  scan.forward.z = strided_view(xz + E, B, L, E, 2 * E);
  scan.forward.delta_bias = vector_view(param[index.dt_proj_bias], E);
  scan.forward.delta_softplus = true;
  scan.forward.initial_state = states.ssm.initial;
  scan.grad_y = typed_view(grad_y.data(), {B, L, E});
  scan.grad_final_state = states.ssm.grad_final;
  scan.grad_u = typed_view(grad_xc.data(), {B, L, E});
  scan.grad_delta = typed_view(grad_dt.data(), {B, L, E});
  if (grad_a_log != nullptr) scan.grad_A = typed_view(grad_a.data(), {E, N});
  scan.grad_B = strided_view(grad_dbc.data() + R, B, L, N, W);
  scan.grad_C = strided_view(grad_dbc.data() + R + N, B, L, N, W);
  scan.grad_D = vector_view(grad_param(index.d), E);
  scan.grad_z = strided_view(grad_xz.data() + E, B, L, E, 2 * E);
  scan.grad_delta_bias = vector_view(grad_param(index.dt_proj_bias), E);
  scan.grad_initial_state = states.ssm.grad_initial;
  MAMBAKIT_RETURN_IF_ERROR(sdk::selective_scan_backward(context, scan));

  if (grad_a_log != nullptr) {
    for (std::int64_t i = 0; i < E * N; ++i) grad_a_log[i] += grad_a[i] * a[i];
  }

  // dt_proj: dt = dt_low W_dt^T, dt_low the first R columns of dbc.
  sdk::util::linear_backward_params(grad_dt.data(), E, dbc, W, grad_param(index.dt_proj_weight), nullptr, M, R,
                                        E);
  sdk::util::linear_backward_input(grad_dt.data(), E, param[index.dt_proj_weight], grad_dbc.data(), W,
                                       M, R, E);

  // x_proj: dbc = xc W_x^T.
  sdk::util::linear_backward_params(grad_dbc.data(), W, xc.data(), E, grad_param(index.x_proj_weight), nullptr,
                                        M, E, W);
  sdk::util::linear_backward_input(grad_dbc.data(), W, param[index.x_proj_weight], grad_xc.data(), E, M,
                                       E, W);

  // conv + SiLU, into the x half of grad_xz.
  sdk::util::causal_conv_silu_backward(xz, 2 * E, param[index.conv_weight], param[index.conv_bias],
                            states.conv.initial.as<const T>(), grad_xc.data(), states.conv.grad_final.as<const T>(),
                            grad_xz.data(), 2 * E, grad_param(index.conv_weight), grad_param(index.conv_bias),
                            states.conv.grad_initial.as<T>(), B, L, E, K, context.n_threads);

  // in_proj: xz = x W_in^T + b_in.
  sdk::util::linear_backward_params(grad_xz.data(), 2 * E, args.x.as<const T>(), D,
                                        grad_param(index.in_proj_weight), grad_param(index.in_proj_bias), M, D,
                                        2 * E);
  if (args.grad_x.present()) {
    sdk::util::linear_backward_input(grad_xz.data(), 2 * E, param[index.in_proj_weight],
                                         args.grad_x.as<T>(), D, M, D, 2 * E);
  }
  return sdk::Status::success();
}

}  // namespace

sdk::Status s6_backward(const S6Dims& dims, const S6ParamIndex& index, const sdk::Context& context,
                        const sdk::MixerBackwardArgs& args) {
  return sdk::guard([&]() -> sdk::Status {
    if (args.x.dtype == sdk::DType::kF64) return backward_typed<double>(dims, index, context, args);
    return backward_typed<float>(dims, index, context, args);  // f32 parameters: checked by S6Mixer::backward
  });
}

}  // namespace mambakit::mixer_s6
