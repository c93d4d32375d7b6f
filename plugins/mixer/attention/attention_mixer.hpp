#pragma once
// mixer/attention: the multi-head attention layer of the official `MHA`
// (mamba_ssm/modules/mha.py) as MambaLMHeadModel builds it for the layers in attn_layer_idx,
// in its checkpoint layout:
//
//   qkv | mlp = in_proj(x)                         q: H heads, k and v: Hkv heads of hd
//   qkv = conv1d(qkv) + bias                       (d_conv > 0; depthwise, causal, no activation)
//   q, k = rotary(q, k, position)                  (rotary_emb_dim > 0; first R dims of each head)
//   context = causal_attention(q, k, v)            (kernel kind "attention", the host's choice;
//                                                   grouped-query heads, softmax_scale)
//   out = out_proj(context | up * silu(gate))      (up | gate = mlp, when mlp_dim > 0)
//
// The key/value cache is state that grows (ABI 2.3): keys are cached after the rotary
// embedding; the conv state holds the conv's inputs, so decode equals forward. Forward,
// backward and the decode step run on the CPU (f32 with f32/f16/bf16/int8 weights, or all f64).

#include "attention_layout.hpp"
#include "mambakit/sdk/mixer.hpp"
#include "mambakit/sdk/util/speed_shares.hpp"
#include "rotary.hpp"

namespace mambakit::mixer_attention {

inline constexpr const char* kComponent = "mixer/attention";

/// What forward, backward and step need to know about the layer.
struct AttentionLayer {
  AttentionDims dims;
  AttentionParamIndex params;
  AttentionSavedIndex saved;
  Rotary rotary;
  explicit AttentionLayer(const AttentionDims& d)
      : dims(d), params(d), saved(d), rotary(d.rotary_dim, d.rotary_base, d.rotary_interleaved) {}
};

class AttentionMixer final : public sdk::Mixer {
 public:
  explicit AttentionMixer(const char* config_json);

  void capabilities(sdk::MixerCapabilities* out) const noexcept override;
  std::int32_t param_count() const noexcept override { return layer_.params.count; }
  sdk::Status param_spec(std::int32_t index, sdk::ParamSpec* out) const noexcept override;
  std::int32_t state_count() const noexcept override { return layer_.dims.has_conv_state() ? 3 : 2; }
  sdk::Status state_spec(std::int32_t index, std::int64_t batch, sdk::TensorSpec* out) const noexcept override;
  std::int32_t saved_count() const noexcept override { return layer_.saved.count; }
  sdk::Status saved_spec(std::int32_t index, std::int64_t batch, std::int64_t length,
                         sdk::TensorSpec* out) const noexcept override;
  sdk::Status forward(const sdk::Context& context, const sdk::MixerForwardArgs& args) noexcept override;
  sdk::Status backward(const sdk::Context& context, const sdk::MixerBackwardArgs& args) noexcept override;
  sdk::Status step(const sdk::Context& context, const sdk::MixerStepArgs& args) noexcept override;
  /// The key and value caches hold one entry per token on axis 1.
  std::int32_t state_token_axis(std::int32_t index) const noexcept override {
    return index == kKeyCache || index == kValueCache ? 1 : -1;
  }

 private:
  AttentionLayer layer_;
  sdk::util::SpeedShares in_proj_shares_, out_proj_shares_;  // the decode step's split between threads
};

/// The forward pass over (B, L) tokens; see AttentionMixer::forward.
sdk::Status attention_forward_pass(const AttentionLayer& layer, const sdk::Context& context,
                                   const sdk::MixerForwardArgs& args);

/// The backward pass of attention_forward_pass.
sdk::Status attention_backward_pass(const AttentionLayer& layer, const sdk::Context& context,
                                    const sdk::MixerBackwardArgs& args);

/// One decode step; `in_proj_shares` and `out_proj_shares` split the projections between threads.
sdk::Status attention_step(const AttentionLayer& layer, const sdk::Context& context, const sdk::MixerStepArgs& args,
                           sdk::util::SpeedShares& in_proj_shares, sdk::util::SpeedShares& out_proj_shares);

}  // namespace mambakit::mixer_attention
