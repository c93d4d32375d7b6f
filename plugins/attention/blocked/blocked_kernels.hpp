#pragma once
// The three paths of attention/blocked, each for T = float or double, each validated by
// attention_calls.hpp before it runs:
//   blocked_prefill   forward with L > 1: blocks of queries x blocks of keys, online softmax
//   blocked_decode    forward with L = 1: the cache streamed once in chunks of tokens, every head
//   blocked_backward  the flash-attention-2 backward, in two passes (keys' and queries' gradients)

#include "mambakit/sdk/attention_kernel.hpp"
#include "mambakit/sdk/context.hpp"

namespace mambakit::attention_blocked {

template <class T>
void blocked_prefill(const sdk::AttentionForwardArgs& args, int n_threads);

template <class T>
void blocked_decode(const sdk::Context& context, const sdk::AttentionForwardArgs& args);

template <class T>
void blocked_backward(const sdk::Context& context, const sdk::AttentionBackwardArgs& args);

}  // namespace mambakit::attention_blocked
