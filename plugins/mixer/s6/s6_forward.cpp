// S6 forward over whole sequences and the one-token decode step.
//
//   xz = in_proj(x)                 (M, 2E): x half | z half      M = B * L rows
//   xc = silu(conv1d(x half) + b)   (M, E)
//   dbc = x_proj(xc)                (M, R + 2N): dt_low | B | C
//   dt = dt_proj(dt_low)            (M, E); its bias and the softplus are applied in the scan
//   y = scan(xc, dt, -exp(A_log), B, C, D, z, dt_proj.bias)     (M, E)
//   out = out_proj(y)               (M, D)
//
// The forward runs in f32 (f32, f16 or bf16 parameters, the half ones widened per call) or
// entirely in f64 (f64 parameters). The step reads its four weight matrices in their stored
// type (few_rows.hpp), so half-precision weights halve the bytes a decode step streams.
//
// With MixerForwardArgs::saved, xz, dbc and y are written into the saved views (see S6Saved)
// instead of scratch memory; the arithmetic is the same, so y is too.
//
// Dimensions: B batch, L length, D d_model, E d_inner, N d_state, R dt_rank, K d_conv.

#include <omp.h>

#include <algorithm>
#include <utility>
#include <vector>

#include "causal_conv.hpp"
#include "few_rows.hpp"
#include "linear.hpp"
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
  plugin_common::set_gemm_threads(context.n_threads);
  const plugin_common::TypedParams<T> param(context, args.params, index.count, kComponent);

  const bool save = args.saved != nullptr;
  sdk::WorkspaceArray<T> xz_scratch(context, save ? 0 : M * 2 * E), xc(context, M * E),
      dbc_scratch(context, save ? 0 : M * W), dt(context, M * E), y_scratch(context, save ? 0 : M * E),
      a(context, E * N);
  T* xz = save ? args.saved[kSavedXz].as<T>() : xz_scratch.data();
  T* dbc = save ? args.saved[kSavedDbc].as<T>() : dbc_scratch.data();
  T* y = save ? args.saved[kSavedY].as<T>() : y_scratch.data();

  plugin_common::linear_forward(args.x.as<const T>(), D, param[index.in_proj_weight], param[index.in_proj_bias], xz,
                                2 * E, M, D, 2 * E);
  causal_conv_silu(xz, 2 * E, param[index.conv_weight], param[index.conv_bias],
                   args.initial_state ? args.initial_state[kConvState].as<const T>() : nullptr,
                   args.final_state ? args.final_state[kConvState].as<T>() : nullptr, xc.data(), B, L, E, K,
                   context.n_threads);
  plugin_common::linear_forward<T>(xc.data(), E, param[index.x_proj_weight], nullptr, dbc, W, M, E, W);
  plugin_common::linear_forward<T>(dbc, W, param[index.dt_proj_weight], nullptr, dt.data(), E, M, R, E);
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
  MAMBAKIT_RETURN_IF_ERROR(sdk::selective_scan_forward(context, scan));

  plugin_common::linear_forward(y, E, param[index.out_proj_weight], param[index.out_proj_bias], args.y.as<T>(), D, M,
                                E, D);
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

namespace {

/// The channels [begin, end) of thread `thread` of `threads`: whole 16-channel blocks (the scan
/// backends' SIMD width), as evenly as they divide.
std::pair<std::int64_t, std::int64_t> channel_range(std::int64_t channels, int thread, int threads) {
  const std::int64_t blocks = (channels + 15) / 16;
  const std::int64_t begin = blocks * thread / threads * 16, end = blocks * (thread + 1) / threads * 16;
  return {std::min(begin, channels), std::min(end, channels)};
}

/// Rows [begin, end) of `rows` for thread `thread` of `threads`, in blocks of 8 (the few-rows
/// kernel's block).
std::pair<std::int64_t, std::int64_t> row_range(std::int64_t rows, int thread, int threads) {
  const std::int64_t blocks = (rows + 7) / 8;
  return {std::min(blocks * thread / threads * 8, rows), std::min(blocks * (thread + 1) / threads * 8, rows)};
}

/// A (rows, width) view of `data` whose rows are `row_stride` elements apart.
sdk::TensorView rows_view(const float* data, std::int64_t rows, std::int64_t width, std::int64_t row_stride) {
  sdk::TensorView view = typed_view(data, {rows, width});
  view.strides[0] = row_stride;
  return view;
}

}  // namespace

sdk::Status s6_step(const S6Dims& dims, const S6ParamIndex& index, const sdk::Context& context,
                    const sdk::MixerStepArgs& args) {
  // One parallel region per step. Each thread owns a range of channels from in_proj through
  // the conv and the scan (channels are independent there), so only x_proj (which mixes all
  // channels) and out_proj (likewise) need the whole previous result: three barriers per step.
  return sdk::guard([&]() -> sdk::Status {
    const std::int64_t B = args.x.shape[0];
    const std::int64_t D = dims.d_model, E = dims.d_inner, N = dims.d_state, R = dims.dt_rank, K = dims.d_conv;
    const std::int64_t W = dims.dbc_width();
    // The weight matrices are read in their stored type; the small parameters as f32.
    const int matrices[] = {index.in_proj_weight, index.x_proj_weight, index.dt_proj_weight, index.out_proj_weight};
    const plugin_common::TypedParams<float> param(
        context, args.params, index.count, kComponent,
        {index.in_proj_weight, index.x_proj_weight, index.dt_proj_weight, index.out_proj_weight});
    for (const int matrix : matrices) {
      const sdk::DType dtype = args.params[matrix].dtype;
      if (dtype != sdk::DType::kF32 && dtype != sdk::DType::kF16 && dtype != sdk::DType::kBF16) {
        return sdk::Status::error(sdk::StatusCode::kInvalidArgument, "mixer/s6 step: parameter %d is %s", matrix,
                                  sdk::dtype_name(dtype));
      }
    }
    const sdk::TensorView* weights = args.params;
    const float* x = args.x.as<const float>();
    float* conv_state = args.state[kConvState].as<float>();
    const sdk::TensorView ssm_state = args.state[kSsmState];

    sdk::WorkspaceArray<float> xz(context, B * 2 * E), xc(context, B * E), dbc(context, B * W), dt(context, B * E),
        y(context, B * E), a(context, E * N);
    sdk::Context one_thread = context;  // each thread scans its own channels
    one_thread.n_threads = 1;
    const int threads = std::max(1, context.n_threads);
    std::vector<sdk::Status> statuses(static_cast<std::size_t>(threads), sdk::Status::success());

#pragma omp parallel num_threads(threads)
    {
      const int thread = omp_get_thread_num(), team = omp_get_num_threads();
      const auto [e0, e1] = channel_range(E, thread, team);
      const std::int64_t width = e1 - e0;
      // in_proj, x and z halves of my channels; the conv and A of my channels.
      plugin_common::linear_few_rows_range(x, D, weights[index.in_proj_weight], param[index.in_proj_bias], xz.data(),
                                           2 * E, B, D, e0, e1);
      plugin_common::linear_few_rows_range(x, D, weights[index.in_proj_weight], param[index.in_proj_bias], xz.data(),
                                           2 * E, B, D, E + e0, E + e1);
      const float* conv_bias = param[index.conv_bias];
      for (std::int64_t b = 0; b < B && width > 0; ++b) {
        causal_conv_silu_step(xz.data() + b * 2 * E + e0, 2 * E, param[index.conv_weight] + e0 * K,
                              conv_bias != nullptr ? conv_bias + e0 : nullptr, conv_state + (b * E + e0) * K,
                              xc.data() + b * E + e0, std::int64_t{1}, width, K);
      }
      negative_exp(param[index.a_log] + e0 * N, a.data() + e0 * N, width * N);
#pragma omp barrier
      // x_proj mixes every channel: dt_low | B | C.
      const auto [w0, w1] = row_range(W, thread, team);
      plugin_common::linear_few_rows_range(xc.data(), E, weights[index.x_proj_weight], nullptr, dbc.data(), W, B, E,
                                           w0, w1);
#pragma omp barrier
      // dt_proj and the scan step for my channels.
      plugin_common::linear_few_rows_range(dbc.data(), W, weights[index.dt_proj_weight], nullptr, dt.data(), E, B, R,
                                           e0, e1);
      if (width > 0) {
        sdk::ScanStepArgs scan;
        scan.u = rows_view(xc.data() + e0, B, width, E);
        scan.delta = rows_view(dt.data() + e0, B, width, E);
        scan.A = typed_view(a.data() + e0 * N, {width, N});
        scan.B = rows_view(dbc.data() + R, B, N, W);
        scan.C = rows_view(dbc.data() + R + N, B, N, W);
        scan.D = vector_view(param[index.d] != nullptr ? param[index.d] + e0 : nullptr, width);
        scan.z = rows_view(xz.data() + E + e0, B, width, 2 * E);
        scan.delta_bias = vector_view(param[index.dt_proj_bias] != nullptr ? param[index.dt_proj_bias] + e0 : nullptr,
                                      width);
        scan.delta_softplus = true;
        scan.state = ssm_state;
        scan.state.data = ssm_state.as<float>() + e0 * N;
        scan.state.shape[1] = width;
        scan.y = rows_view(y.data() + e0, B, width, E);
        statuses[static_cast<std::size_t>(thread)] = sdk::selective_scan_step(one_thread, scan);
      }
#pragma omp barrier
      // out_proj mixes every channel.
      const auto [d0, d1] = row_range(D, thread, team);
      plugin_common::linear_few_rows_range(y.data(), E, weights[index.out_proj_weight], param[index.out_proj_bias],
                                           args.y.as<float>(), D, B, E, d0, d1);
    }
    for (const auto& status : statuses) MAMBAKIT_RETURN_IF_ERROR(status);
    return sdk::Status::success();
  });
}

}  // namespace mambakit::mixer_s6
