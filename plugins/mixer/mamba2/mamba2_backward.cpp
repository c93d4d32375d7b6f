// Mamba-2 backward: the gradient of mamba2_forward (see mamba2_forward.cpp), in reverse order,
// from the saved zxbcdt and y (Mamba2Saved):
//
//   recompute  xbc = silu(conv(xBC)),  dt,  A = -exp(A_log)
//   out_proj:  g_normed = g_out W_out
//   norm:      g_y and g_z (into the z columns of g_zxbcdt), grad norm.weight; it recomputes the
//              normalised values n, so out_proj's input normed = n * norm.weight comes with them:
//              grad W_out += g_out^T normed,  grad b_out += sum g_out
//   ssd:       the kernel's backward gives g_x, g_B, g_C (into g_xbc), g_dt, g_A, g_D and the
//              initial SSM state's gradient; grad A_log += g_A * A   (dA/dA_log = A)
//   dt:        through the clamp and the softplus into the dt columns of g_zxbcdt, and dt_bias
//   conv:      through the SiLU and the depthwise conv into the xBC columns of g_zxbcdt, the
//              conv weight and bias, and the initial conv state
//   in_proj:   grad W_in += g_zxbcdt^T x,  grad b_in += sum g_zxbcdt,  grad_x += g_zxbcdt W_in
//
// Every gradient output accumulates (+=); an absent grad_params view is a frozen parameter.
// Runs in the parameters' type: f32 or f64.
//
// Dimensions: B batch, L length, D d_model, E d_inner, H heads, C conv_dim, I d_in_proj.

#include <algorithm>
#include <cmath>

#include "mamba2_math.hpp"
#include "mamba2_mixer.hpp"
#include "mamba2_views.hpp"
#include "mambakit/sdk/guard.hpp"
#include "mambakit/sdk/ssd_calls.hpp"
#include "mambakit/sdk/util/backward_views.hpp"
#include "mambakit/sdk/util/causal_conv.hpp"
#include "mambakit/sdk/util/linear.hpp"
#include "mambakit/sdk/workspace.hpp"

namespace mambakit::mixer_mamba2 {

namespace {

template <class T>
sdk::Status backward_typed(const Mamba2Dims& d, const Mamba2ParamIndex& index, const sdk::Context& context,
                           const sdk::MixerBackwardArgs& args) {
  const std::int64_t B = args.x.shape[0], L = args.x.shape[1], M = B * L;
  const std::int64_t D = d.d_model, E = d.d_inner, H = d.heads, C = d.conv_dim(), I = d.d_in_proj();
  sdk::util::set_gemm_threads(context.n_threads);
  const sdk::util::TypedParams<T> param(context, args.params, index.count, "mixer/mamba2 backward");
  auto grad_param = [&](int i) { return sdk::util::grad_param_view(args, i).as<T>(); };
  const T* zxbcdt = args.saved[kSavedZxbcdt].as<const T>();  // (M, I)
  const T* y = args.saved[kSavedY].as<const T>();            // (M, E)
  const T* grad_out = args.grad_y.as<const T>();             // (M, D)
  const sdk::util::BackwardState conv(args, kConvState), ssm(args, kSsmState);

  sdk::WorkspaceArray<T> xbc(context, M * C), dt(context, M * H), a(context, H), normed(context, M * E),
      grad_normed(context, M * E), grad_y(context, M * E), grad_xbc(context, M * C), grad_dt(context, M * H),
      grad_a(context, H), grad_zxbcdt(context, M * I);

  // Recompute what forward did not save.
  sdk::util::causal_conv_silu(zxbcdt + d.xbc_offset(), I, param[index.conv_weight], param[index.conv_bias],
                              conv.initial.as<const T>(), static_cast<T*>(nullptr), xbc.data(), B, L, C, d.d_conv,
                              context.n_threads);
  dt_forward(zxbcdt + d.dt_offset(), I, param[index.dt_bias], d.dt_limit_min, d.dt_limit_max, dt.data(), M, H,
             context.n_threads);
  for (std::int64_t h = 0; h < H; ++h) a[h] = -std::exp(param[index.a_log][h]);

  // out_proj's input gradient, then the gated norm: into grad_y and the z columns of
  // grad_zxbcdt; it leaves the unweighted normalised values in `normed`.
  sdk::util::linear_backward_input(grad_out, D, param[index.out_proj_weight], grad_normed.data(), E, M, E, D,
                                   /*accumulate=*/false);
  std::fill(grad_zxbcdt.data(), grad_zxbcdt.data() + M * I, T(0));
  gated_norm_backward(y, zxbcdt, I, param[index.norm_weight], grad_normed.data(), grad_y.data(), grad_zxbcdt.data(),
                      I, grad_param(index.norm_weight), normed.data(), M, E, d.groups, d.norm_eps, context.n_threads);
  // out_proj's parameters, from its input: the normalised values times the norm's weight.
  const T* norm_weight = param[index.norm_weight];
#pragma omp parallel for num_threads(context.n_threads) schedule(static)
  for (std::int64_t m = 0; m < M; ++m) {
    for (std::int64_t e = 0; e < E; ++e) normed[m * E + e] *= norm_weight[e];
  }
  sdk::util::linear_backward_params(grad_out, D, normed.data(), E, grad_param(index.out_proj_weight),
                                    grad_param(index.out_proj_bias), M, E, D);

  // The SSD scan.
  std::fill(grad_xbc.data(), grad_xbc.data() + M * C, T(0));
  std::fill(grad_dt.data(), grad_dt.data() + M * H, T(0));
  std::fill(grad_a.data(), grad_a.data() + H, T(0));
  const XbcViews<T> slices(xbc.data(), d, B, L), grad_slices(grad_xbc.data(), d, B, L);
  sdk::SsdBackwardArgs ssd;
  ssd.forward.x = slices.x;
  ssd.forward.dt = contiguous(dt.data(), {B, L, H});
  ssd.forward.A = contiguous(a.data(), {H});
  ssd.forward.B = slices.B;
  ssd.forward.C = slices.C;
  ssd.forward.D = contiguous(param[index.d], {H});
  ssd.forward.initial_state = ssm.initial;
  ssd.grad_y = rows4(grad_y.data(), B, L, H, d.head_dim, E);
  ssd.grad_final_state = ssm.grad_final;
  ssd.grad_x = grad_slices.x;
  ssd.grad_dt = contiguous(grad_dt.data(), {B, L, H});
  ssd.grad_A = contiguous(grad_a.data(), {H});
  ssd.grad_B = grad_slices.B;
  ssd.grad_C = grad_slices.C;
  ssd.grad_D = contiguous(grad_param(index.d), {H});
  ssd.grad_initial_state = ssm.grad_initial;
  MAMBAKIT_RETURN_IF_ERROR(sdk::ssd_backward(context, ssd));
  if (T* grad_a_log = grad_param(index.a_log)) {
    for (std::int64_t h = 0; h < H; ++h) grad_a_log[h] += grad_a[h] * a[h];
  }

  // dt, into the dt columns of grad_zxbcdt.
  dt_backward(zxbcdt + d.dt_offset(), I, param[index.dt_bias], d.dt_limit_min, d.dt_limit_max, grad_dt.data(),
              grad_zxbcdt.data() + d.dt_offset(), I, grad_param(index.dt_bias), M, H, context.n_threads);

  // conv + SiLU, into the xBC columns of grad_zxbcdt.
  sdk::util::causal_conv_silu_backward(zxbcdt + d.xbc_offset(), I, param[index.conv_weight], param[index.conv_bias],
                                       conv.initial.as<const T>(), grad_xbc.data(), conv.grad_final.as<const T>(),
                                       grad_zxbcdt.data() + d.xbc_offset(), I, grad_param(index.conv_weight),
                                       grad_param(index.conv_bias), conv.grad_initial.as<T>(), B, L, C, d.d_conv,
                                       context.n_threads);

  // in_proj.
  sdk::util::linear_backward_params(grad_zxbcdt.data(), I, args.x.as<const T>(), D, grad_param(index.in_proj_weight),
                                    grad_param(index.in_proj_bias), M, D, I);
  if (args.grad_x.present()) {
    sdk::util::linear_backward_input(grad_zxbcdt.data(), I, param[index.in_proj_weight], args.grad_x.as<T>(), D, M, D,
                                     I);
  }
  return sdk::Status::success();
}

}  // namespace

sdk::Status mamba2_backward(const Mamba2Dims& dims, const Mamba2ParamIndex& index, const sdk::Context& context,
                            const sdk::MixerBackwardArgs& args) {
  return sdk::guard([&]() -> sdk::Status {
    if (args.x.dtype == sdk::DType::kF64) return backward_typed<double>(dims, index, context, args);
    return backward_typed<float>(dims, index, context, args);
  });
}

}  // namespace mambakit::mixer_mamba2
