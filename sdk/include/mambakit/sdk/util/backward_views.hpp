#pragma once
// The optional pieces of a mixer's backward arguments (mixer.hpp), resolved once: a frozen or
// absent parameter's gradient, and each state's views. Shared by the in-tree mixers' CPU and
// CUDA backward passes.

#include "mambakit/sdk/mixer.hpp"
#include "mambakit/sdk/tensor_view.hpp"

namespace mambakit::sdk::util {

/// View `i` of an optional array of views: absent when the array is null or i < 0 (an absent
/// optional parameter's index).
inline TensorView optional_view(const TensorView* views, int i) {
  return views == nullptr || i < 0 ? TensorView{} : views[i];
}

/// The gradient view of parameter `i`: absent for an absent optional parameter (-1), when
/// args.grad_params is null, and for a frozen parameter (an absent view).
inline TensorView grad_param_view(const MixerBackwardArgs& args, int i) { return optional_view(args.grad_params, i); }

/// State `i` of a backward call: its initial value, the gradient of its final value (in), and
/// the gradient of its initial value (out, +=). Each is absent when the caller passed none; the
/// initial value's gradient is also absent when the initial value is: a constant zero state
/// gets no gradient.
struct BackwardState {
  BackwardState(const MixerBackwardArgs& args, int i)
      : initial(optional_view(args.initial_state, i)),
        grad_final(optional_view(args.grad_final_state, i)),
        grad_initial(initial.present() ? optional_view(args.grad_initial_state, i) : TensorView{}) {}

  TensorView initial, grad_final, grad_initial;
};

}  // namespace mambakit::sdk::util
