#pragma once
// mixer/gated_mlp: the GatedMLP of state-spaces/mamba (mamba_ssm/modules/mlp.py), as the
// official Block uses it in its second residual sub-block (the host's "mlp" slot,
// h += mlp(norm2(h))), in its checkpoint layout:
//
//   h = fc1(x)               (M, 2F)     fc1.weight (2F, D), fc1.bias (2F) when `bias`
//   a | g = h                            (y, gate = y.chunk(2, dim=-1): a first, g second)
//   u = a * silu(g)          (M, F)
//   y = fc2(u)               (M, D)      fc2.weight (D, F), fc2.bias (D) when `bias`
//
// No state (state_count 0): step() is forward on one token. Forward and the step run on the
// CPU in f32 with f32, f16, bf16 or int8 (kQ8) weights, or entirely in f64; backward with f32
// or f64 parameters.
//
// Dimensions: B batch, L length, M = B * L rows, D d_model, F hidden.

#include "gated_mlp_layout.hpp"
#include "mambakit/sdk/mixer.hpp"
#include "mambakit/sdk/util/speed_shares.hpp"

namespace mambakit::mixer_gated_mlp {

class GatedMlp final : public sdk::Mixer {
 public:
  /// Options: the host's d_model, n_layer and layer_index; d_intermediate (required, >= 1),
  /// multiple_of (default 128; F = ceil(d_intermediate / multiple_of) * multiple_of) and
  /// bias (default false). Throws std::invalid_argument naming a missing or invalid option.
  explicit GatedMlp(const char* config_json);

  void capabilities(sdk::MixerCapabilities* out) const noexcept override;
  std::int32_t param_count() const noexcept override { return index_.count; }
  /// nn.Linear's initialisation, U(+-1/sqrt(fan_in)), for both weights, fc2's bound divided
  /// by sqrt(n_layer) as MambaLMHeadModel leaves it; biases zero.
  sdk::Status param_spec(std::int32_t index, sdk::ParamSpec* out) const noexcept override;
  std::int32_t state_count() const noexcept override { return 0; }
  sdk::Status state_spec(std::int32_t index, std::int64_t batch, sdk::TensorSpec* out) const noexcept override;
  std::int32_t saved_count() const noexcept override { return kSavedCount; }
  sdk::Status saved_spec(std::int32_t index, std::int64_t batch, std::int64_t length,
                         sdk::TensorSpec* out) const noexcept override;
  sdk::Status forward(const sdk::Context& context, const sdk::MixerForwardArgs& args) noexcept override;
  sdk::Status backward(const sdk::Context& context, const sdk::MixerBackwardArgs& args) noexcept override;
  sdk::Status step(const sdk::Context& context, const sdk::MixerStepArgs& args) noexcept override;

 private:
  GatedMlpDims dims_;
  GatedMlpParamIndex index_;
  sdk::util::SpeedShares fc1_shares_, fc2_shares_;  // the decode step's split between threads
};

/// The forward pass over (B, L) tokens; see GatedMlp.
sdk::Status gated_mlp_forward(const GatedMlpDims& dims, const GatedMlpParamIndex& index, const sdk::Context& context,
                              const sdk::MixerForwardArgs& args);

/// The backward pass of gated_mlp_forward, from the saved fc1 output.
sdk::Status gated_mlp_backward(const GatedMlpDims& dims, const GatedMlpParamIndex& index, const sdk::Context& context,
                               const sdk::MixerBackwardArgs& args);

/// One token per row; `fc1_shares` and `fc2_shares` split the projections between threads.
sdk::Status gated_mlp_step(const GatedMlpDims& dims, const GatedMlpParamIndex& index, const sdk::Context& context,
                           const sdk::MixerStepArgs& args, sdk::util::SpeedShares& fc1_shares,
                           sdk::util::SpeedShares& fc2_shares);

}  // namespace mambakit::mixer_gated_mlp
