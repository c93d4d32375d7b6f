// Mamba-2 forward over whole sequences (the decode step is in mamba2_step.cpp).
//
//   zxbcdt = in_proj(x)                       (M, I): z | xBC | dt        M = B * L rows
//   xbc = silu(conv1d(xBC) + b)               (M, C)
//   dt = clamp(softplus(dt + dt_bias))        (M, H)
//   y = ssd(x, dt, -exp(A_log), B, C, D)      (M, E)   x | B | C = xbc
//   out = out_proj(gated_norm(y, z))          (M, D)
//
// f32 (f32, f16 or bf16 parameters, the 16-bit ones widened per call) or entirely f64. With
// MixerForwardArgs::saved, zxbcdt and y go into the saved views (Mamba2Saved).
//
// Dimensions: B batch, L length, D d_model, E d_inner, H heads, C conv_dim, I d_in_proj.

#include <cmath>

#include "mamba2_math.hpp"
#include "mamba2_mixer.hpp"
#include "mamba2_views.hpp"
#include "mambakit/sdk/guard.hpp"
#include "mambakit/sdk/ssd_calls.hpp"
#include "mambakit/sdk/util/causal_conv.hpp"
#include "mambakit/sdk/util/linear.hpp"
#include "mambakit/sdk/workspace.hpp"

namespace mambakit::mixer_mamba2 {

namespace {

template <class T>
sdk::Status forward_typed(const Mamba2Dims& d, const Mamba2ParamIndex& index, const sdk::Context& context,
                          const sdk::MixerForwardArgs& args) {
  const std::int64_t B = args.x.shape[0], L = args.x.shape[1], M = B * L;
  const std::int64_t D = d.d_model, E = d.d_inner, H = d.heads, C = d.conv_dim(), I = d.d_in_proj();
  sdk::util::set_gemm_threads(context.n_threads);
  const sdk::util::TypedParams<T> param(context, args.params, index.count, "mixer/mamba2");

  const bool save = args.saved != nullptr;
  sdk::WorkspaceArray<T> zxbcdt_scratch(context, save ? 0 : M * I), xbc(context, M * C), dt(context, M * H),
      a(context, H), y_scratch(context, save ? 0 : M * E), normed(context, M * E);
  T* zxbcdt = save ? args.saved[kSavedZxbcdt].as<T>() : zxbcdt_scratch.data();
  T* y = save ? args.saved[kSavedY].as<T>() : y_scratch.data();

  sdk::util::linear_forward(context.n_threads, args.x.as<const T>(), D, param.linear(index.in_proj_weight),
                            param[index.in_proj_bias], zxbcdt, I, M, D, I);
  sdk::util::causal_conv_silu(zxbcdt + d.xbc_offset(), I, param[index.conv_weight], param[index.conv_bias],
                              args.initial_state ? args.initial_state[kConvState].as<const T>() : nullptr,
                              args.final_state ? args.final_state[kConvState].as<T>() : nullptr, xbc.data(), B, L, C,
                              d.d_conv, context.n_threads);
  dt_forward(zxbcdt + d.dt_offset(), I, param[index.dt_bias], d.dt_limit_min, d.dt_limit_max, dt.data(), M, H,
             context.n_threads);
  for (std::int64_t h = 0; h < H; ++h) a[h] = -std::exp(param[index.a_log][h]);

  const XbcViews<T> slices(xbc.data(), d, B, L);
  sdk::SsdForwardArgs ssd;
  ssd.x = slices.x;
  ssd.dt = contiguous(dt.data(), {B, L, H});
  ssd.A = contiguous(a.data(), {H});
  ssd.B = slices.B;
  ssd.C = slices.C;
  ssd.D = contiguous(param[index.d], {H});
  if (args.initial_state) ssd.initial_state = args.initial_state[kSsmState];
  if (args.final_state) ssd.final_state = args.final_state[kSsmState];
  ssd.y = rows4(y, B, L, H, d.head_dim, E);
  MAMBAKIT_RETURN_IF_ERROR(sdk::ssd_forward(context, ssd, save));

  gated_norm_forward(y, zxbcdt, I, param[index.norm_weight], normed.data(), M, E, d.groups, d.norm_eps,
                     context.n_threads);
  sdk::util::linear_forward(context.n_threads, normed.data(), E, param.linear(index.out_proj_weight),
                            param[index.out_proj_bias], args.y.as<T>(), D, M, E, D);
  return sdk::Status::success();
}

}  // namespace

sdk::Status mamba2_forward(const Mamba2Dims& dims, const Mamba2ParamIndex& index, const sdk::Context& context,
                           const sdk::MixerForwardArgs& args) {
  return sdk::guard([&]() -> sdk::Status {
    if (args.x.dtype == sdk::DType::kF64) return forward_typed<double>(dims, index, context, args);
    return forward_typed<float>(dims, index, context, args);
  });
}

}  // namespace mambakit::mixer_mamba2
