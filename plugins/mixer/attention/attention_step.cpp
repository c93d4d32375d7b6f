// The attention mixer's one-token decode step: the equations of attention_forward.cpp for one
// token per row at position p_b (MixerStepArgs::positions), the caches and the conv state in
// place. The projections stream their weights in the stored type (few_rows.hpp), split between
// threads by their measured speeds; the new k and v go into the caches at p_b, and the
// attention kernel reads the p_b + 1 held entries (a problem of length 1, its decode path).
// f32 only (f32, f16, bf16 or int8 weights).
//
// Dimensions: B batch, D d_model, H heads, Hkv kv heads, hd head_dim, Q qkv_dim, I d_in_proj,
// F out_proj's input, C cache capacity.

#include "attention_mixer.hpp"
#include "attention_views.hpp"
#include "depthwise_conv.hpp"
#include "mambakit/sdk/attention_calls.hpp"
#include "mambakit/sdk/guard.hpp"
#include "mambakit/sdk/util/few_rows.hpp"
#include "mambakit/sdk/util/gated_silu.hpp"
#include "mambakit/sdk/util/typed_params.hpp"
#include "mambakit/sdk/workspace.hpp"

namespace mambakit::mixer_attention {

sdk::Status attention_step(const AttentionLayer& layer, const sdk::Context& context, const sdk::MixerStepArgs& args,
                           sdk::util::SpeedShares& in_proj_shares, sdk::util::SpeedShares& out_proj_shares) {
  return sdk::guard([&]() -> sdk::Status {
    if (args.x.dtype != sdk::DType::kF32) {
      return sdk::Status::error(sdk::StatusCode::kInvalidArgument, "%s step runs in f32, not %s", kComponent,
                                sdk::dtype_name(args.x.dtype));
    }
    if (!args.positions.present()) {
      return sdk::Status::error(sdk::StatusCode::kInvalidArgument,
                                "%s step needs the rows' positions (MixerStepArgs::positions, ABI 2.3)", kComponent);
    }
    const AttentionDims& d = layer.dims;
    const AttentionParamIndex& index = layer.params;
    const std::int64_t B = args.x.shape[0];
    const std::int64_t D = d.d_model, I = d.d_in_proj(), Q = d.qkv_dim(), F = d.d_out_in(), KV = d.kv_dim();
    const int threads = std::max(1, context.n_threads);
    std::vector<std::int64_t> positions = row_positions(args.positions, B, true, "step");
    const std::int64_t capacity = args.state[kKeyCache].shape[1];
    check_capacity(positions, 1, capacity, "state's cache");
    // The weight matrices are read in their stored type, the small parameters as f32.
    const sdk::util::TypedParams<float> param(context, args.params, index.count, "mixer/attention step",
                                              {index.in_proj_weight, index.out_proj_weight});
    sdk::WorkspaceArray<float> in(context, B * I), qkv_scratch(context, d.d_conv > 0 ? B * Q : 0),
        out_in(context, B * F);
    float* qkv = d.d_conv > 0 ? qkv_scratch.data() : in.data();
    const std::int64_t ld_qkv = d.d_conv > 0 ? Q : I;

    sdk::util::linear_few_rows(args.x.as<const float>(), D, args.params[index.in_proj_weight],
                               param[index.in_proj_bias], in.data(), I, B, D, I, threads, in_proj_shares);
    if (d.d_conv > 0) {
      depthwise_conv_step(in.data(), I, param[index.conv_weight], param[index.conv_bias],
                          d.has_conv_state() ? args.state[kConvState].as<float>() : nullptr, qkv, Q, B, Q, d.d_conv);
    }
    if (d.mlp_dim > 0) {
      sdk::util::gated_silu_forward(in.data() + Q, I, out_in.data() + d.q_dim(), F, B, d.mlp_dim / 2, 1);
    }
    rotate_rows(layer.rotary, qkv, ld_qkv, 0, d.heads, d.head_dim, positions, 1, false, 1);
    rotate_rows(layer.rotary, qkv, ld_qkv, d.k_offset(), d.heads_kv, d.head_dim, positions, 1, false, 1);

    float* caches[2] = {args.state[kKeyCache].as<float>(), args.state[kValueCache].as<float>()};
    const std::int64_t offsets[2] = {d.k_offset(), d.v_offset()};
    for (int c = 0; c < 2; ++c) {
      for (std::int64_t b = 0; b < B; ++b) {
        std::copy_n(qkv + b * ld_qkv + offsets[c], KV, caches[c] + (b * capacity + positions[static_cast<std::size_t>(b)]) * KV);
      }
    }
    sdk::AttentionForwardArgs attention;
    attention.q = heads_view(qkv, B, 1, d.heads, d.head_dim, ld_qkv);
    attention.k = heads_view(caches[0], B, capacity, d.heads_kv, d.head_dim, KV);
    attention.v = heads_view(caches[1], B, capacity, d.heads_kv, d.head_dim, KV);
    attention.positions = positions_view(positions);
    attention.softmax_scale = d.softmax_scale;
    attention.out = heads_view(out_in.data(), B, 1, d.heads, d.head_dim, F);
    MAMBAKIT_RETURN_IF_ERROR(sdk::attention_forward(context, attention));

    sdk::util::linear_few_rows(out_in.data(), F, args.params[index.out_proj_weight], param[index.out_proj_bias],
                               args.y.as<float>(), D, B, F, D, threads, out_proj_shares);
    return sdk::Status::success();
  });
}

}  // namespace mambakit::mixer_attention
