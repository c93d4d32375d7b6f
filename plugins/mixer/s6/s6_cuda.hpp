#pragma once
// mixer/s6 on CUDA tensors (built only with MAMBAKIT_S6_WITH_CUDA; declarations free of CUDA
// headers so that s6_mixer.cpp compiles either way). The contract the host calls it under:
//   - Context::device is {kCuda, index}; Context::stream a cudaStream_t (nullptr: the default
//     stream); Context::workspace a device allocator whose memory is stream-ordered (it may be
//     handed back while work that uses it is still queued on the stream); Context::scan a
//     backend that runs on CUDA (scan/cuda); n_threads is ignored.
//   - Every view is device memory on that device, contiguous: parameters f32, f16 or bf16
//     (each one may have its own dtype), x, y and the states f32, states laid out as on the
//     CPU (conv state (B, E, K) of conv inputs, oldest first; SSM state (B, E, N)).
//   - Calls enqueue work on the stream and return without synchronising, allocating device
//     memory other than through the workspace, or copying between host and device.
//   - forward (prefill) and backward use cuBLAS (one handle per thread and device, f32 GEMMs without TF32);
//     step (decode) uses only the plugin's own kernels and the scan backend's step, so the
//     host may capture a step into a CUDA graph.
//   - Training: forward with saved activations writes them (f32) for backward, which needs f32
//     parameters (kInvalidArgument otherwise, as on the CPU) and accumulates every gradient.
//
// The math is that of s6_forward.cpp, s6_step.cpp and s6_backward.cpp, step by step.

#include "mambakit/sdk/context.hpp"
#include "mambakit/sdk/mixer.hpp"
#include "mambakit/sdk/status.hpp"
#include "s6_layout.hpp"

namespace mambakit::mixer_s6 {

/// The forward over whole sequences on the GPU; when args.saved is set, also writes the
/// activations backward reads (S6Saved) there.
sdk::Status s6_forward_cuda(const S6Dims& dims, const S6ParamIndex& index, const sdk::Context& context,
                            const sdk::MixerForwardArgs& args) noexcept;

/// The backward of s6_forward_cuda on the GPU (args.saved non-null, f32 parameters): every
/// gradient output accumulates (+=); absent grad_params views (frozen parameters) are skipped.
sdk::Status s6_backward_cuda(const S6Dims& dims, const S6ParamIndex& index, const sdk::Context& context,
                             const sdk::MixerBackwardArgs& args) noexcept;

/// One decode step on the GPU, graph-capturable.
sdk::Status s6_step_cuda(const S6Dims& dims, const S6ParamIndex& index, const sdk::Context& context,
                         const sdk::MixerStepArgs& args) noexcept;

}  // namespace mambakit::mixer_s6
