// The attention mixer's forward over whole sequences (the decode step is in attention_step.cpp).
//
//   in = in_proj(x)                              (M, I): qkv | up | gate       M = B * L rows
//   qkv = conv1d(in[:, :Q]) or in[:, :Q]         (M, Q)
//   q, k = rotary(q, k) at positions p_b + t
//   caches: [0, p_b) from the initial state, [p_b, p_b + L) the new k and v
//   context = attention(q, caches)               (M, H hd), the chosen attention kernel
//   out_in = context | up * silu(gate)           (M, F)
//   y = out_proj(out_in)                         (M, D)
//
// The attention reads the caches of final_state when it is asked for (forward then writes
// their whole held part), a scratch cache when only an initial state is given, and otherwise
// (nothing held) the k and v columns of qkv in place. f32 (f32, f16, bf16 or int8 parameters)
// or entirely f64. With MixerForwardArgs::saved, the activations of AttentionSavedIndex go into
// the saved views.
//
// Dimensions: B batch, L length, D d_model, H heads, Hkv kv heads, hd head_dim, Q qkv_dim,
// I d_in_proj, F out_proj's input.

#include <cmath>

#include "attention_mixer.hpp"
#include "attention_views.hpp"
#include "depthwise_conv.hpp"
#include "mambakit/sdk/attention_calls.hpp"
#include "mambakit/sdk/guard.hpp"
#include "mambakit/sdk/util/gated_silu.hpp"
#include "mambakit/sdk/util/linear.hpp"
#include "mambakit/sdk/workspace.hpp"

namespace mambakit::mixer_attention {

namespace {

template <class T>
sdk::Status forward_typed(const AttentionLayer& layer, const sdk::Context& context,
                          const sdk::MixerForwardArgs& args) {
  const AttentionDims& d = layer.dims;
  const AttentionParamIndex& index = layer.params;
  const std::int64_t B = args.x.shape[0], L = args.x.shape[1], M = B * L;
  const std::int64_t D = d.d_model, I = d.d_in_proj(), Q = d.qkv_dim(), F = d.d_out_in(), KV = d.kv_dim();
  sdk::util::set_gemm_threads(context.n_threads);
  const sdk::util::TypedParams<T> param(context, args.params, index.count, kComponent);
  const sdk::TensorView* initial = args.initial_state;
  const sdk::TensorView* final_state = args.final_state;
  std::vector<std::int64_t> positions = row_positions(args.positions, B, initial != nullptr, "forward");
  const std::int64_t longest = *std::max_element(positions.begin(), positions.end()) + L;

  const bool save = args.saved != nullptr;
  const bool keeps_in = d.keeps_in_proj_out();
  const AttentionSavedIndex& saved = layer.saved;
  sdk::WorkspaceArray<T> in_scratch(context, keeps_in && !save ? M * I : 0), qkv_scratch(context, save ? 0 : M * Q),
      out_in_scratch(context, save ? 0 : M * F);
  T* qkv = save ? args.saved[saved.qkv].as<T>() : qkv_scratch.data();
  T* in = !keeps_in ? qkv : (save ? args.saved[saved.in_proj_out].as<T>() : in_scratch.data());
  T* out_in = save ? args.saved[saved.out_proj_in].as<T>() : out_in_scratch.data();

  sdk::util::linear_forward(context.n_threads, args.x.as<const T>(), D, param.linear(index.in_proj_weight),
                            param[index.in_proj_bias], in, I, M, D, I);
  if (d.d_conv > 0) {
    const bool state = d.has_conv_state();
    depthwise_conv(in, I, param[index.conv_weight], param[index.conv_bias],
                   state && initial ? initial[kConvState].as<const T>() : nullptr,
                   state && final_state ? final_state[kConvState].as<T>() : nullptr, qkv, Q, B, L, Q, d.d_conv,
                   context.n_threads);
  } else if (keeps_in) {
    for (std::int64_t m = 0; m < M; ++m) std::copy_n(in + m * I, Q, qkv + m * Q);
  }
  if (d.mlp_dim > 0) {
    sdk::util::gated_silu_forward(in + Q, I, out_in + d.q_dim(), F, M, d.mlp_dim / 2, context.n_threads);
  }
  rotate_rows(layer.rotary, qkv, Q, 0, d.heads, d.head_dim, positions, L, false, context.n_threads);
  rotate_rows(layer.rotary, qkv, Q, d.k_offset(), d.heads_kv, d.head_dim, positions, L, false, context.n_threads);

  // The caches the attention reads.
  sdk::AttentionForwardArgs attention;
  const std::int64_t scratch_capacity = final_state == nullptr && initial != nullptr ? longest : 0;
  sdk::WorkspaceArray<T> cache_scratch(context, 2 * B * scratch_capacity * KV);
  if (final_state != nullptr || initial != nullptr) {
    T* caches[2] = {cache_scratch.data(), cache_scratch.data() + B * scratch_capacity * KV};
    std::int64_t capacity = scratch_capacity;
    if (final_state != nullptr) {
      caches[0] = final_state[kKeyCache].as<T>();
      caches[1] = final_state[kValueCache].as<T>();
      capacity = final_state[kKeyCache].shape[1];
      check_capacity(positions, L, capacity, "final state's cache");
    }
    for (int c = 0; c < 2; ++c) {
      const T* held = initial != nullptr ? initial[kKeyCache + c].as<const T>() : nullptr;
      const std::int64_t held_capacity = initial != nullptr ? initial[kKeyCache + c].shape[1] : 0;
      if (initial != nullptr) check_capacity(positions, 0, held_capacity, "initial state's cache");
      fill_cache(caches[c], capacity, held, held_capacity, qkv, Q, c == 0 ? d.k_offset() : d.v_offset(), positions,
                 L, KV);
    }
    attention.k = heads_view(caches[0], B, capacity, d.heads_kv, d.head_dim, KV);
    attention.v = heads_view(caches[1], B, capacity, d.heads_kv, d.head_dim, KV);
    attention.positions = positions_view(positions);
  } else {
    attention.k = heads_view(qkv + d.k_offset(), B, L, d.heads_kv, d.head_dim, Q);
    attention.v = heads_view(qkv + d.v_offset(), B, L, d.heads_kv, d.head_dim, Q);
  }
  attention.q = heads_view(qkv, B, L, d.heads, d.head_dim, Q);
  attention.softmax_scale = d.softmax_scale;
  attention.out = heads_view(out_in, B, L, d.heads, d.head_dim, F);
  if (save) attention.lse = args.saved[saved.lse];
  MAMBAKIT_RETURN_IF_ERROR(sdk::attention_forward(context, attention, save));

  sdk::util::linear_forward(context.n_threads, out_in, F, param.linear(index.out_proj_weight),
                            param[index.out_proj_bias], args.y.as<T>(), D, M, F, D);
  return sdk::Status::success();
}

}  // namespace

sdk::Status attention_forward_pass(const AttentionLayer& layer, const sdk::Context& context,
                                   const sdk::MixerForwardArgs& args) {
  return sdk::guard([&]() -> sdk::Status {
    if (args.x.dtype == sdk::DType::kF64) return forward_typed<double>(layer, context, args);
    return forward_typed<float>(layer, context, args);
  });
}

}  // namespace mambakit::mixer_attention
