#pragma once
// The optional pieces of mixer/s6's backward arguments, resolved once for the CPU
// (s6_backward.cpp) and CUDA (s6_cuda_backward.cpp) paths.

#include "mambakit/sdk/mixer.hpp"
#include "mambakit/sdk/tensor_view.hpp"
#include "s6_layout.hpp"

namespace mambakit::mixer_s6 {

/// View `i` of an optional array of views, absent when the array is null.
inline sdk::TensorView optional_view(const sdk::TensorView* views, int i) {
  return views == nullptr ? sdk::TensorView{} : views[i];
}

/// The gradient view of parameter `i` (index in S6ParamIndex): absent for an absent optional
/// parameter (-1), when args.grad_params is null, and for a frozen parameter (absent view).
inline sdk::TensorView grad_param_view(const sdk::MixerBackwardArgs& args, int i) {
  return i < 0 ? sdk::TensorView{} : optional_view(args.grad_params, i);
}

/// The state views of a backward call (S6State order), each absent when the caller passed none.
/// The initial state's gradients are also absent when that initial state is: a constant zero
/// state gets no gradient (as in the scan backends).
struct S6BackwardStates {
  explicit S6BackwardStates(const sdk::MixerBackwardArgs& args)
      : initial_conv(optional_view(args.initial_state, kConvState)),
        initial_ssm(optional_view(args.initial_state, kSsmState)),
        grad_final_conv(optional_view(args.grad_final_state, kConvState)),
        grad_final_ssm(optional_view(args.grad_final_state, kSsmState)),
        grad_initial_conv(initial_conv.present() ? optional_view(args.grad_initial_state, kConvState)
                                                 : sdk::TensorView{}),
        grad_initial_ssm(initial_ssm.present() ? optional_view(args.grad_initial_state, kSsmState)
                                               : sdk::TensorView{}) {}

  sdk::TensorView initial_conv, initial_ssm;            ///< (B, E, K), (B, E, N)
  sdk::TensorView grad_final_conv, grad_final_ssm;      ///< (B, E, K), (B, E, N), in
  sdk::TensorView grad_initial_conv, grad_initial_ssm;  ///< (B, E, K), (B, E, N), out +=
};

}  // namespace mambakit::mixer_s6
