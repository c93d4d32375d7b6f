#pragma once
// mixer/s6: the Mamba-1 selective SSM mixer (Gu & Dao 2023), in Hugging Face's parameter
// layout. The selective scan itself runs in the scan backend the host chose
// (Context::scan); this plugin does the projections, the causal conv and the gating, forward,
// backward (s6_backward.cpp) and the decode step. On CUDA tensors (builds with CUDA) all three
// run on the GPU (s6_cuda.hpp), backward with f32 parameters only, as on the CPU.

#include "mambakit/sdk/mixer.hpp"
#include "s6_a_cache.hpp"
#include "s6_layout.hpp"
#include "mambakit/sdk/util/speed_shares.hpp"

namespace mambakit::mixer_s6 {

class S6Mixer final : public sdk::Mixer {
 public:
  explicit S6Mixer(const char* config_json);

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
  /// A_log = log(1..N) per channel (S4D-real) and the dt bias (softplus^-1 of a log-uniform dt).
  sdk::Status initialize(const sdk::InitArgs& args) noexcept override;

 private:
  S6Dims dims_;
  S6ParamIndex index_;
  sdk::util::SpeedShares step_shares_;  // the decode step's split between threads
  NegativeExpCache step_a_;             // the decode step's A = -exp(A_log)
};

/// The forward pass over (B, L) tokens; see S6Mixer::forward.
sdk::Status s6_forward(const S6Dims& dims, const S6ParamIndex& index, const sdk::Context& context,
                       const sdk::MixerForwardArgs& args);

/// The backward pass of s6_forward; see S6Mixer::backward.
sdk::Status s6_backward(const S6Dims& dims, const S6ParamIndex& index, const sdk::Context& context,
                        const sdk::MixerBackwardArgs& args);

/// One decode step; see S6Mixer::step. `shares` splits the work between threads and learns
/// from this step's timings; `a_cache` keeps A = -exp(A_log) between steps.
sdk::Status s6_step(const S6Dims& dims, const S6ParamIndex& index, const sdk::Context& context,
                    const sdk::MixerStepArgs& args, sdk::util::SpeedShares& shares, NegativeExpCache& a_cache);

}  // namespace mambakit::mixer_s6
