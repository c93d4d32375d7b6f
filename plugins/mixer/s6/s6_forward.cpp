// S6 forward over whole sequences (the decode step is in s6_step.cpp).
//
//   xz = in_proj(x)                 (M, 2E): x half | z half      M = B * L rows
//   xc = silu(conv1d(x half) + b)   (M, E)
//   dbc = x_proj(xc)                (M, R + 2N): dt_low | B | C
//   dt = dt_proj(dt_low)            (M, E); its bias and the softplus are applied in the scan
//   y = scan(xc, dt, -exp(A_log), B, C, D, z, dt_proj.bias)     (M, E)
//   out = out_proj(y)               (M, D)
//
// The forward runs in f32 (f32, f16 or bf16 parameters, the 16-bit ones widened per call) or
// entirely in f64 (f64 parameters).
//
// With MixerForwardArgs::saved, xz, dbc and y are written into the saved views (see S6Saved)
// instead of scratch memory; the arithmetic is the same, so y is too.
//
// Dimensions: B batch, L length, D d_model, E d_inner, N d_state, R dt_rank, K d_conv.

#include "mambakit/sdk/util/causal_conv.hpp"
#include "mambakit/sdk/util/linear.hpp"
#include "mambakit/sdk/guard.hpp"
#include "mambakit/sdk/scan_calls.hpp"
#include "mambakit/sdk/workspace.hpp"
#include "s6_mixer.hpp"
#include "s6_views.hpp"

namespace mambakit::mixer_s6 {

namespace {

constexpr const char* kComponent = "mixer/s6";

template <class T>
sdk::Status forward_typed(const S6Dims& dims, const S6ParamIndex& index, const sdk::Context& context,
                          const sdk::MixerForwardArgs& args) {
  const std::int64_t B = args.x.shape[0], L = args.x.shape[1], M = B * L;
  const std::int64_t D = dims.d_model, E = dims.d_inner, N = dims.d_state, R = dims.dt_rank, K = dims.d_conv;
  const std::int64_t W = dims.dbc_width();
  sdk::util::set_gemm_threads(context.n_threads);
  const sdk::util::TypedParams<T> param(context, args.params, index.count, kComponent);

  const bool save = args.saved != nullptr;
  sdk::WorkspaceArray<T> xz_scratch(context, save ? 0 : M * 2 * E), xc(context, M * E),
      dbc_scratch(context, save ? 0 : M * W), dt(context, M * E), y_scratch(context, save ? 0 : M * E),
      a(context, E * N);
  T* xz = save ? args.saved[kSavedXz].as<T>() : xz_scratch.data();
  T* dbc = save ? args.saved[kSavedDbc].as<T>() : dbc_scratch.data();
  T* y = save ? args.saved[kSavedY].as<T>() : y_scratch.data();

  sdk::util::linear_forward(context.n_threads, args.x.as<const T>(), D, param.linear(index.in_proj_weight),
                            param[index.in_proj_bias], xz, 2 * E, M, D, 2 * E);
  sdk::util::causal_conv_silu(xz, 2 * E, param[index.conv_weight], param[index.conv_bias],
                   args.initial_state ? args.initial_state[kConvState].as<const T>() : nullptr,
                   args.final_state ? args.final_state[kConvState].as<T>() : nullptr, xc.data(), B, L, E, K,
                   context.n_threads);
  sdk::util::linear_forward<T>(context.n_threads, xc.data(), E, param.linear(index.x_proj_weight), nullptr, dbc, W,
                               M, E, W);
  sdk::util::linear_forward<T>(context.n_threads, dbc, W, param.linear(index.dt_proj_weight), nullptr, dt.data(), E,
                               M, R, E);
  negative_exp(param[index.a_log], a.data(), E * N);

  sdk::ScanForwardArgs scan;
  scan.u = typed_view(xc.data(), {B, L, E});
  scan.delta = typed_view(dt.data(), {B, L, E});
  scan.A = typed_view(a.data(), {E, N});
  scan.B = strided_view(dbc + R, B, L, N, W);
  scan.C = strided_view(dbc + R + N, B, L, N, W);
  scan.D = vector_view(param[index.d], E);
  scan.z = strided_view(xz + E, B, L, E, 2 * E);
  scan.delta_bias = vector_view(param[index.dt_proj_bias], E);
  scan.delta_softplus = true;
  if (args.initial_state) scan.initial_state = args.initial_state[kSsmState];
  if (args.final_state) scan.final_state = args.final_state[kSsmState];
  scan.y = typed_view(y, {B, L, E});
  MAMBAKIT_RETURN_IF_ERROR(sdk::selective_scan_forward(context, scan, args.saved != nullptr));

  sdk::util::linear_forward(context.n_threads, y, E, param.linear(index.out_proj_weight), param[index.out_proj_bias],
                            args.y.as<T>(), D, M, E, D);
  return sdk::Status::success();
}

}  // namespace

sdk::Status s6_forward(const S6Dims& dims, const S6ParamIndex& index, const sdk::Context& context,
                       const sdk::MixerForwardArgs& args) {
  return sdk::guard([&]() -> sdk::Status {
    if (args.x.dtype == sdk::DType::kF64) return forward_typed<double>(dims, index, context, args);
    return forward_typed<float>(dims, index, context, args);
  });
}

}  // namespace mambakit::mixer_s6
