// The attention mixer's backward: the gradient of attention_forward_pass (see
// attention_forward.cpp), in reverse order, from the saved activations (AttentionSavedIndex):
//
//   out_proj:   grad W_out += g_y^T out_in,  grad b_out += sum g_y,  g_out_in = g_y W_out
//   MLP:        g_up, g_gate from g_out_in's MLP columns, into g_in's up | gate columns
//   attention:  the kernel's backward gives g_q, and g_k, g_v for every cache entry read; the
//               held entries' gradients go to the initial caches' gradients, the new ones to
//               g_qkv's k | v columns, as do the final caches' gradients
//   rotary:     g_q, g_k rotated back
//   conv:       into g_in's qkv columns, the conv weight and bias, the initial conv state
//   in_proj:    grad W_in += g_in^T x,  grad b_in += sum g_in,  grad_x += g_in W_in
//
// Every gradient output accumulates (+=); an absent grad_params view is a frozen parameter.
// Runs in the parameters' type: f32 or f64.
//
// Dimensions: B batch, L length, D d_model, H heads, Hkv kv heads, hd head_dim, Q qkv_dim,
// I d_in_proj, F out_proj's input, C cache capacity.

#include <algorithm>

#include "attention_mixer.hpp"
#include "attention_views.hpp"
#include "depthwise_conv.hpp"
#include "mambakit/sdk/attention_calls.hpp"
#include "mambakit/sdk/guard.hpp"
#include "mambakit/sdk/util/backward_views.hpp"
#include "mambakit/sdk/util/gated_silu.hpp"
#include "mambakit/sdk/util/linear.hpp"
#include "mambakit/sdk/workspace.hpp"

namespace mambakit::mixer_attention {

namespace {

template <class T>
sdk::Status backward_typed(const AttentionLayer& layer, const sdk::Context& context,
                           const sdk::MixerBackwardArgs& args) {
  const AttentionDims& d = layer.dims;
  const AttentionParamIndex& index = layer.params;
  const AttentionSavedIndex& saved = layer.saved;
  const std::int64_t B = args.x.shape[0], L = args.x.shape[1], M = B * L;
  const std::int64_t D = d.d_model, I = d.d_in_proj(), Q = d.qkv_dim(), F = d.d_out_in(), KV = d.kv_dim();
  sdk::util::set_gemm_threads(context.n_threads);
  const sdk::util::TypedParams<T> param(context, args.params, index.count, "mixer/attention backward");
  auto grad_param = [&](int i) { return sdk::util::grad_param_view(args, i).as<T>(); };
  const bool with_state = args.initial_state != nullptr;
  std::vector<std::int64_t> positions = row_positions(args.positions, B, with_state, "backward");
  const std::int64_t longest = *std::max_element(positions.begin(), positions.end()) + L;
  const T* qkv = args.saved[saved.qkv].as<const T>();             // (M, Q)
  const T* in = d.keeps_in_proj_out() ? args.saved[saved.in_proj_out].as<const T>() : qkv;  // (M, I)
  const T* out_in = args.saved[saved.out_proj_in].as<const T>();  // (M, F)
  const sdk::util::BackwardState keys(args, kKeyCache), values(args, kValueCache);

  // g_in (M, I); g_qkv is its qkv columns, or a buffer of its own before a conv.
  sdk::WorkspaceArray<T> grad_out_in(context, M * F), grad_in(context, M * I),
      grad_qkv_scratch(context, d.d_conv > 0 ? M * Q : 0);
  std::fill(grad_in.data(), grad_in.data() + M * I, T(0));
  T* grad_qkv = d.d_conv > 0 ? grad_qkv_scratch.data() : grad_in.data();
  const std::int64_t ld_grad_qkv = d.d_conv > 0 ? Q : I;
  if (d.d_conv > 0) std::fill(grad_qkv, grad_qkv + M * Q, T(0));

  // out_proj and the MLP.
  const T* grad_y = args.grad_y.as<const T>();
  sdk::util::linear_backward_params(grad_y, D, out_in, F, grad_param(index.out_proj_weight),
                                    grad_param(index.out_proj_bias), M, F, D);
  sdk::util::linear_backward_input(grad_y, D, param[index.out_proj_weight], grad_out_in.data(), F, M, F, D,
                                   /*accumulate=*/false);
  if (d.mlp_dim > 0) {
    sdk::util::gated_silu_backward(in + Q, I, grad_out_in.data() + d.q_dim(), F, grad_in.data() + Q, I, M,
                                   d.mlp_dim / 2, context.n_threads);
  }

  // Attention: over a scratch cache of the held and new entries when something is held,
  // otherwise over qkv's k | v columns in place.
  const std::int64_t capacity = with_state ? longest : 0;
  sdk::WorkspaceArray<T> caches(context, 2 * B * capacity * KV), grad_caches(context, 2 * B * capacity * KV);
  sdk::AttentionBackwardArgs attention;
  attention.forward.q = heads_view(qkv, B, L, d.heads, d.head_dim, Q);
  attention.forward.softmax_scale = d.softmax_scale;
  attention.forward.out = heads_view(out_in, B, L, d.heads, d.head_dim, F);
  attention.forward.lse = args.saved[saved.lse];
  attention.grad_out = heads_view(grad_out_in.data(), B, L, d.heads, d.head_dim, F);
  attention.grad_q = heads_view(grad_qkv, B, L, d.heads, d.head_dim, ld_grad_qkv);
  const sdk::util::BackwardState* states[2] = {&keys, &values};
  const std::int64_t offsets[2] = {d.k_offset(), d.v_offset()};
  if (with_state) {
    std::fill(grad_caches.data(), grad_caches.data() + 2 * B * capacity * KV, T(0));
    T* cache[2] = {caches.data(), caches.data() + B * capacity * KV};
    T* grad_cache[2] = {grad_caches.data(), grad_caches.data() + B * capacity * KV};
    for (int c = 0; c < 2; ++c) {
      const sdk::TensorView& held = states[c]->initial;
      check_capacity(positions, 0, held.shape[1], "initial state's cache");
      fill_cache(cache[c], capacity, held.as<const T>(), held.shape[1], qkv, Q, offsets[c], positions, L, KV);
    }
    attention.forward.k = heads_view(cache[0], B, capacity, d.heads_kv, d.head_dim, KV);
    attention.forward.v = heads_view(cache[1], B, capacity, d.heads_kv, d.head_dim, KV);
    attention.forward.positions = positions_view(positions);
    attention.grad_k = heads_view(grad_cache[0], B, capacity, d.heads_kv, d.head_dim, KV);
    attention.grad_v = heads_view(grad_cache[1], B, capacity, d.heads_kv, d.head_dim, KV);
    MAMBAKIT_RETURN_IF_ERROR(sdk::attention_backward(context, attention));
    for (int c = 0; c < 2; ++c) {
      const sdk::TensorView& grad_held = states[c]->grad_initial;
      scatter_cache_gradient(grad_cache[c], capacity, grad_held.as<T>(), grad_held.present() ? grad_held.shape[1] : 0,
                             grad_qkv, ld_grad_qkv, offsets[c], positions, L, KV);
    }
  } else {
    attention.forward.k = heads_view(qkv + d.k_offset(), B, L, d.heads_kv, d.head_dim, Q);
    attention.forward.v = heads_view(qkv + d.v_offset(), B, L, d.heads_kv, d.head_dim, Q);
    attention.grad_k = heads_view(grad_qkv + d.k_offset(), B, L, d.heads_kv, d.head_dim, ld_grad_qkv);
    attention.grad_v = heads_view(grad_qkv + d.v_offset(), B, L, d.heads_kv, d.head_dim, ld_grad_qkv);
    MAMBAKIT_RETURN_IF_ERROR(sdk::attention_backward(context, attention));
  }
  // The final caches hold the initial entries [0, p_b) and the new ones.
  for (int c = 0; c < 2; ++c) {
    const sdk::TensorView& grad_final = states[c]->grad_final;
    if (!grad_final.present()) continue;
    const sdk::TensorView& grad_held = states[c]->grad_initial;
    check_capacity(positions, L, grad_final.shape[1], "final state's cache gradient");
    scatter_cache_gradient(grad_final.as<const T>(), grad_final.shape[1], grad_held.as<T>(),
                           grad_held.present() ? grad_held.shape[1] : 0, grad_qkv, ld_grad_qkv, offsets[c], positions,
                           L, KV);
  }

  rotate_rows(layer.rotary, grad_qkv, ld_grad_qkv, 0, d.heads, d.head_dim, positions, L, true, context.n_threads);
  rotate_rows(layer.rotary, grad_qkv, ld_grad_qkv, d.k_offset(), d.heads_kv, d.head_dim, positions, L, true,
              context.n_threads);

  if (d.d_conv > 0) {
    const sdk::util::BackwardState conv(args, d.has_conv_state() ? kConvState : -1);  // -1: no conv state
    depthwise_conv_backward(in, I, param[index.conv_weight], conv.initial.as<const T>(), grad_qkv, Q,
                            conv.grad_final.as<const T>(), grad_in.data(), I, grad_param(index.conv_weight),
                            grad_param(index.conv_bias), conv.grad_initial.as<T>(), B, L, Q, d.d_conv,
                            context.n_threads);
  }

  sdk::util::linear_backward_params(grad_in.data(), I, args.x.as<const T>(), D, grad_param(index.in_proj_weight),
                                    grad_param(index.in_proj_bias), M, D, I);
  if (args.grad_x.present()) {
    sdk::util::linear_backward_input(grad_in.data(), I, param[index.in_proj_weight], args.grad_x.as<T>(), D, M, D, I);
  }
  return sdk::Status::success();
}

}  // namespace

sdk::Status attention_backward_pass(const AttentionLayer& layer, const sdk::Context& context,
                                    const sdk::MixerBackwardArgs& args) {
  return sdk::guard([&]() -> sdk::Status {
    if (args.x.dtype == sdk::DType::kF64) return backward_typed<double>(layer, context, args);
    return backward_typed<float>(layer, context, args);
  });
}

}  // namespace mambakit::mixer_attention
