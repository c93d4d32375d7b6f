#pragma once
// mixer/mamba2: the Mamba-2 mixer (Dao & Gu 2024) with the semantics of the official `Mamba2`
// module, in its checkpoint layout (the official and the Hugging Face names agree):
//
//   z | xBC | dt = in_proj(x)
//   xBC = silu(conv1d(xBC) + bias);  x | B | C = xBC      (x: H heads of P; B, C: G groups of N)
//   dt = clamp(softplus(dt + dt_bias), dt_limit);  A = -exp(A_log)
//   y = ssd(x, dt, A, B, C, D)                            (kernel kind "ssd", the host's choice)
//   out = out_proj(rmsnorm_per_group(y * silu(z)) * norm.weight)
//
// Forward, backward and the decode step run on the CPU (f32 with f32/f16/bf16 weights, or all
// f64); no CUDA path yet, so the mixer declares the CPU only.

#include "mamba2_layout.hpp"
#include "mambakit/sdk/mixer.hpp"
#include "mambakit/sdk/util/speed_shares.hpp"

namespace mambakit::mixer_mamba2 {

class Mamba2Mixer final : public sdk::Mixer {
 public:
  explicit Mamba2Mixer(const char* config_json);

  void capabilities(sdk::MixerCapabilities* out) const noexcept override;
  std::int32_t param_count() const noexcept override { return index_.count; }
  sdk::Status param_spec(std::int32_t index, sdk::ParamSpec* out) const noexcept override;
  std::int32_t state_count() const noexcept override { return kStateCount; }
  sdk::Status state_spec(std::int32_t index, std::int64_t batch, sdk::TensorSpec* out) const noexcept override;
  std::int32_t saved_count() const noexcept override { return kSavedCount; }
  sdk::Status saved_spec(std::int32_t index, std::int64_t batch, std::int64_t length,
                         sdk::TensorSpec* out) const noexcept override;
  sdk::Status forward(const sdk::Context& context, const sdk::MixerForwardArgs& args) noexcept override;
  sdk::Status backward(const sdk::Context& context, const sdk::MixerBackwardArgs& args) noexcept override;
  sdk::Status step(const sdk::Context& context, const sdk::MixerStepArgs& args) noexcept override;
  /// A_log = log(U(a_init_min, a_init_max)) per head; dt_bias = softplus^-1 of a log-uniform dt
  /// in [dt_min, dt_max], floored at dt_init_floor (the official initialisation).
  sdk::Status initialize(const sdk::InitArgs& args) noexcept override;

 private:
  Mamba2Dims dims_;
  Mamba2ParamIndex index_;
  sdk::util::SpeedShares in_proj_shares_, out_proj_shares_;  // the decode step's split between threads
};

/// The forward pass over (B, L) tokens; see Mamba2Mixer::forward.
sdk::Status mamba2_forward(const Mamba2Dims& dims, const Mamba2ParamIndex& index, const sdk::Context& context,
                           const sdk::MixerForwardArgs& args);

/// The backward pass of mamba2_forward.
sdk::Status mamba2_backward(const Mamba2Dims& dims, const Mamba2ParamIndex& index, const sdk::Context& context,
                            const sdk::MixerBackwardArgs& args);

/// One decode step; `in_proj_shares` and `out_proj_shares` split the projections between threads.
sdk::Status mamba2_step(const Mamba2Dims& dims, const Mamba2ParamIndex& index, const sdk::Context& context,
                        const sdk::MixerStepArgs& args, sdk::util::SpeedShares& in_proj_shares,
                        sdk::util::SpeedShares& out_proj_shares);

}  // namespace mambakit::mixer_mamba2
