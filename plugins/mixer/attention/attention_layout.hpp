#pragma once
// The attention mixer's dimensions, read from its JSON options, and the order of its
// parameters, state tensors and saved activations.
//
// Dimensions: D d_model, H num_heads, Hkv num_heads_kv, hd head_dim, K d_conv,
// Q qkv_dim = hd (H + 2 Hkv) (in_proj's q | k | v columns: q H*hd, then k Hkv*hd, then v Hkv*hd),
// U mlp_dim rounded up to a multiple of 256 (the parallel gated MLP's up | gate columns),
// I d_in_proj = Q + U, F out_proj's input = H hd + U / 2 (the attention context | the MLP).

#include <cstdint>

namespace mambakit::mixer_attention {

struct AttentionDims {
  std::int64_t d_model = 0, heads = 0, heads_kv = 0, head_dim = 0, d_conv = 0, mlp_dim = 0, rotary_dim = 0,
               n_layer = 1;
  bool qkv_bias = true, out_bias = true, rotary_interleaved = false;
  double softmax_scale = 0, rotary_base = 10000.0;

  [[nodiscard]] std::int64_t q_dim() const { return heads * head_dim; }
  [[nodiscard]] std::int64_t kv_dim() const { return heads_kv * head_dim; }
  [[nodiscard]] std::int64_t qkv_dim() const { return q_dim() + 2 * kv_dim(); }
  /// Column offsets of k and v in the qkv columns.
  [[nodiscard]] std::int64_t k_offset() const { return q_dim(); }
  [[nodiscard]] std::int64_t v_offset() const { return q_dim() + kv_dim(); }
  [[nodiscard]] std::int64_t d_in_proj() const { return qkv_dim() + mlp_dim; }
  [[nodiscard]] std::int64_t d_out_in() const { return q_dim() + mlp_dim / 2; }
  /// The conv keeps its last K - 1 inputs between calls (none when K < 2).
  [[nodiscard]] bool has_conv_state() const { return d_conv >= 2; }
  /// in_proj's output differs from the qkv the attention reads (a conv, or MLP columns).
  [[nodiscard]] bool keeps_in_proj_out() const { return d_conv > 0 || mlp_dim > 0; }
};

/// Position of each parameter in the declared order; optional ones are -1 when absent.
struct AttentionParamIndex {
  int in_proj_weight = -1, in_proj_bias = -1, conv_weight = -1, conv_bias = -1, out_proj_weight = -1,
      out_proj_bias = -1;
  int count = 0;

  explicit AttentionParamIndex(const AttentionDims& dims) {
    in_proj_weight = count++;
    if (dims.qkv_bias) in_proj_bias = count++;
    if (dims.d_conv > 0) {
      conv_weight = count++;
      conv_bias = count++;
    }
    out_proj_weight = count++;
    if (dims.out_bias) out_proj_bias = count++;
  }
};

/// Order of the state tensors: the key and value caches (B, C, Hkv, hd), token axis 1, keys
/// after the rotary embedding (what attention reads); with K >= 2 the conv state
/// (B, Q, K - 1): the last K - 1 conv inputs (in_proj's qkv columns, before the conv), oldest
/// first.
enum AttentionState : int { kKeyCache = 0, kValueCache = 1, kConvState = 2 };

/// Position of each saved activation ((B, L, width) unless noted), -1 when not saved:
///   in_proj_out (I)     in_proj's output, when it is not qkv itself (a conv, or MLP columns)
///   qkv (Q)             q | k | v as attention read them (after the conv and the rotary embedding)
///   out_proj_in (F)     attention's output | the MLP's output
///   lse (B, H, L)       attention's log-sum-exp per query
struct AttentionSavedIndex {
  int in_proj_out = -1, qkv = -1, out_proj_in = -1, lse = -1;
  int count = 0;

  explicit AttentionSavedIndex(const AttentionDims& dims) {
    if (dims.keeps_in_proj_out()) in_proj_out = count++;
    qkv = count++;
    out_proj_in = count++;
    lse = count++;
  }
};

}  // namespace mambakit::mixer_attention
