// The Mamba-2 one-token decode step: the equations of mamba2_forward.cpp for L = 1, states in
// place. The two projections stream their weights in the stored type (few_rows.hpp: 16-bit
// weights halve the bytes a step reads), split between threads by their measured speeds; the
// conv, dt, the SSD step (the chosen ssd kernel) and the gated norm are small.
//
// Dimensions: B batch, D d_model, E d_inner, H heads, P head_dim, G groups, N d_state,
// C conv_dim, I d_in_proj.

#include <cmath>

#include "mamba2_math.hpp"
#include "mamba2_mixer.hpp"
#include "mambakit/sdk/guard.hpp"
#include "mambakit/sdk/ssd_calls.hpp"
#include "mambakit/sdk/util/causal_conv.hpp"
#include "mambakit/sdk/util/few_rows.hpp"
#include "mambakit/sdk/util/typed_params.hpp"
#include "mambakit/sdk/workspace.hpp"

namespace mambakit::mixer_mamba2 {

namespace {

/// A (rows, a, b) f32 view of `data` whose rows are `row_stride` apart.
sdk::TensorView rows3(const float* data, std::int64_t rows, std::int64_t a, std::int64_t b, std::int64_t row_stride) {
  sdk::TensorView view = sdk::make_view(const_cast<float*>(data), {rows, a, b});
  view.strides[0] = row_stride;
  return view;
}

}  // namespace

sdk::Status mamba2_step(const Mamba2Dims& d, const Mamba2ParamIndex& index, const sdk::Context& context,
                        const sdk::MixerStepArgs& args, sdk::util::SpeedShares& in_proj_shares,
                        sdk::util::SpeedShares& out_proj_shares) {
  return sdk::guard([&]() -> sdk::Status {
    if (args.x.dtype != sdk::DType::kF32) {
      return sdk::Status::error(sdk::StatusCode::kInvalidArgument, "mixer/mamba2 step runs in f32, not %s",
                                sdk::dtype_name(args.x.dtype));
    }
    const std::int64_t B = args.x.shape[0];
    const std::int64_t D = d.d_model, E = d.d_inner, H = d.heads, C = d.conv_dim(), I = d.d_in_proj();
    const std::int64_t GN = d.groups * d.d_state;
    const int threads = std::max(1, context.n_threads);
    // The weight matrices are read in their stored type, the small parameters as f32.
    const sdk::util::TypedParams<float> param(context, args.params, index.count, "mixer/mamba2 step",
                                              {index.in_proj_weight, index.out_proj_weight});
    sdk::WorkspaceArray<float> zxbcdt(context, B * I), xbc(context, B * C), dt(context, B * H), a(context, H),
        y(context, B * E), normed(context, B * E);

    sdk::util::linear_few_rows(args.x.as<const float>(), D, args.params[index.in_proj_weight],
                               param[index.in_proj_bias], zxbcdt.data(), I, B, D, I, threads, in_proj_shares);
    sdk::util::causal_conv_silu_step(zxbcdt.data() + d.xbc_offset(), I, param[index.conv_weight],
                                     param[index.conv_bias], args.state[kConvState].as<float>(), xbc.data(), B, C,
                                     d.d_conv);
    dt_forward(zxbcdt.data() + d.dt_offset(), I, param[index.dt_bias], d.dt_limit_min, d.dt_limit_max, dt.data(), B,
               H, 1);
    for (std::int64_t h = 0; h < H; ++h) a[h] = -std::exp(param[index.a_log][h]);

    sdk::SsdStepArgs ssd;
    ssd.x = rows3(xbc.data(), B, H, d.head_dim, C);
    ssd.dt = sdk::make_view(dt.data(), {B, H});
    ssd.A = sdk::make_view(a.data(), {H});
    ssd.B = rows3(xbc.data() + E, B, d.groups, d.d_state, C);
    ssd.C = rows3(xbc.data() + E + GN, B, d.groups, d.d_state, C);
    ssd.D = sdk::make_view(const_cast<float*>(param[index.d]), {H});
    ssd.state = args.state[kSsmState];
    ssd.y = sdk::make_view(y.data(), {B, H, d.head_dim});
    MAMBAKIT_RETURN_IF_ERROR(sdk::ssd_step(context, ssd));

    gated_norm_forward(y.data(), zxbcdt.data(), I, param[index.norm_weight], normed.data(), B, E, d.groups, d.norm_eps,
                       1);
    sdk::util::linear_few_rows(normed.data(), E, args.params[index.out_proj_weight], param[index.out_proj_bias],
                               args.y.as<float>(), D, B, E, D, threads, out_proj_shares);
    return sdk::Status::success();
  });
}

}  // namespace mambakit::mixer_mamba2
