#pragma once
// The state views of mixer/s6's backward arguments, resolved once for the CPU
// (s6_backward.cpp) and CUDA (s6_cuda_backward.cpp) paths (sdk/util/backward_views.hpp).

#include "mambakit/sdk/util/backward_views.hpp"
#include "s6_layout.hpp"

namespace mambakit::mixer_s6 {

using sdk::util::grad_param_view;

/// The conv state (B, E, K) and the SSM state (B, E, N) of a backward call.
struct S6BackwardStates {
  explicit S6BackwardStates(const sdk::MixerBackwardArgs& args) : conv(args, kConvState), ssm(args, kSsmState) {}
  sdk::util::BackwardState conv, ssm;
};

}  // namespace mambakit::mixer_s6
