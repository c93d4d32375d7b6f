#pragma once
// scan/fused: the fast CPU selective scan, f32. Each (row, block of 16 channels) runs the whole
// sequence in time order with its N state vectors in registers (scan_block_kernels.hpp);
// OpenMP spreads the (row, block) pairs over the threads. Softplus, exp(dt A), the D skip and
// the silu(z) gate are fused into the time loop; nothing of size (B, L, E, N) is stored.
//
// Backward per channel block (rows inside, so grad_A, grad_D and grad_delta_bias of a block
// belong to one thread): a forward pass keeps the state every kCheckpointInterval steps; then,
// from the last interval to the first, the interval's states are recomputed from its
// checkpoint and walked back with the adjoint. grad_B and grad_C, sums over all channels, go to
// (B, L, N) buffers, one per run of consecutive channel blocks (kMaxRuns at most), added up in
// run order at the end. A run's blocks are added in order by one thread; the runs do not depend
// on the thread count, and so neither does any order of additions, nor the result.
//
// Dimensions: B batch, L length, E d_inner, N d_state, W = 16 lanes (channels) per block.

#include <omp.h>

#include <algorithm>
#include <cstdint>

#include "mambakit/sdk/context.hpp"
#include "mambakit/sdk/scan_backend.hpp"
#include "scan_block_kernels.hpp"

namespace mambakit::scan_fused {

using scan_cpu::Block;
using scan_cpu::BlockGrads;
using scan_cpu::GradViews;
using scan_cpu::ScanViews;
using scan_cpu::Tensor;
using V = scan_cpu::Vec<float>;
inline constexpr int kW = scan_cpu::kWidth<float>;

/// Steps between the states kept by the backward's first pass.
inline constexpr std::int64_t kCheckpointInterval = 64;
/// The most runs of channel blocks the backward cuts d_inner into: what bounds its memory for
/// grad_B and grad_C (two (B, L, N) buffers per run) and its parallelism (a run per thread).
inline constexpr std::int64_t kMaxRuns = 32;

/// y (B, L, E) and, when present, final_state (B, E, N) from the inputs of `args`.
template <int kN>
void forward(const sdk::Context& context, const sdk::ScanForwardArgs& args) {
  const ScanViews<float> v(args);
  const Tensor<float> y(args.y), final_state(args.final_state);
  const std::int64_t blocks = (v.d_inner + kW - 1) / kW;
  const int threads = scan_cpu::threads_for(context, v.batch * v.length * v.d_inner * v.d_state);
#pragma omp parallel for num_threads(threads) schedule(static)
  for (std::int64_t item = 0; item < v.batch * blocks; ++item) {
    const std::int64_t b = item / blocks;
    const Block<float, kN> blk(v, (item % blocks) * kW);
    V h[Block<float, kN>::kStates];
    scan_cpu::load_state(v.initial_state, blk, b, h);
    scan_cpu::scan_range(v, blk, b, 0, v.length, h, y, nullptr);
    if (final_state.present()) {
      for (int n = 0; n < blk.states(); ++n) {
        sdk::simd::store_strided(final_state.at(b, blk.e0, n), final_state.stride1, h[n], blk.width);
      }
    }
  }
}

/// Every gradient of ScanBackwardArgs that is present, += into it.
template <int kN>
void backward(const sdk::Context& context, const sdk::ScanBackwardArgs& args) {
  const ScanViews<float> v(args.forward);
  const GradViews<float> g(args);
  const std::int64_t L = v.length, N = v.d_state;
  const std::int64_t blocks = (v.d_inner + kW - 1) / kW;
  const std::int64_t intervals = (L + kCheckpointInterval - 1) / kCheckpointInterval;
  const int threads = scan_cpu::threads_for(context, v.batch * L * v.d_inner * N);
  const std::int64_t runs = std::min(blocks, kMaxRuns);  // run r: blocks [r * blocks / runs, (r + 1) * blocks / runs)

  // Per thread: checkpoints (intervals, N) vectors and backward_range()'s scratch. Per run: the
  // partial grad_B and grad_C (B, L, N) when requested.
  const std::size_t row_elems = static_cast<std::size_t>(v.batch * L * N);
  const std::size_t checkpoint_elems = static_cast<std::size_t>(intervals * N * kW);
  const std::size_t range_elems = scan_cpu::backward_range_scratch(kCheckpointInterval, N, kW);
  const std::size_t partial_B = g.grad_B.present() ? scan_cpu::round_to_vectors<float>(row_elems) : 0;
  const std::size_t partial_C = g.grad_C.present() ? scan_cpu::round_to_vectors<float>(row_elems) : 0;
  const std::size_t per_thread = checkpoint_elems + range_elems, per_run = partial_B + partial_C;
  const scan_cpu::Scratch<float> scratch(
      context, per_thread * static_cast<std::size_t>(threads) + per_run * static_cast<std::size_t>(runs));
  float* const run_partials = scratch.data() + per_thread * static_cast<std::size_t>(threads);

#pragma omp parallel num_threads(threads)
  {
    float* mine = scratch.data() + per_thread * static_cast<std::size_t>(omp_get_thread_num());
    V* checkpoints = reinterpret_cast<V*>(mine);
    float* range_scratch = mine + checkpoint_elems;

#pragma omp for schedule(static)
    for (std::int64_t run = 0; run < runs; ++run) {
      float* partials = run_partials + per_run * static_cast<std::size_t>(run);
      std::fill_n(partials, per_run, 0.0f);
      float* grad_B_part = partial_B > 0 ? partials : nullptr;
      float* grad_C_part = partial_C > 0 ? partials + partial_B : nullptr;
      for (std::int64_t block = run * blocks / runs; block < (run + 1) * blocks / runs; ++block) {
        const Block<float, kN> blk(v, block * kW);
        BlockGrads<float, kN> acc(blk.states());
        for (std::int64_t b = 0; b < v.batch; ++b) {
          V h[Block<float, kN>::kStates];
          scan_cpu::load_state(v.initial_state, blk, b, h);
          for (std::int64_t c = 0; c < intervals; ++c) {
            std::copy_n(h, blk.states(), checkpoints + c * N);
            const std::int64_t t0 = c * kCheckpointInterval;
            scan_cpu::scan_range(v, blk, b, t0, std::min(L, t0 + kCheckpointInterval), h, Tensor<float>{}, nullptr);
          }
          V grad_h[Block<float, kN>::kStates];
          scan_cpu::load_state(g.grad_final_state, blk, b, grad_h);
          const scan_cpu::RowSink<float> sink_B{grad_B_part != nullptr ? grad_B_part + b * L * N : nullptr, N};
          const scan_cpu::RowSink<float> sink_C{grad_C_part != nullptr ? grad_C_part + b * L * N : nullptr, N};
          for (std::int64_t c = intervals - 1; c >= 0; --c) {
            const std::int64_t t0 = c * kCheckpointInterval;
            scan_cpu::backward_range(v, g, blk, b, t0, std::min(L, t0 + kCheckpointInterval), checkpoints + c * N,
                                     grad_h, sink_B, sink_C, acc, range_scratch);
          }
          if (g.grad_initial_state.present()) {
            for (int n = 0; n < blk.states(); ++n) {
              for (int j = 0; j < blk.width; ++j) *g.grad_initial_state.at(b, blk.e0 + j, n) += grad_h[n][j];
            }
          }
        }
        acc.flush(g, blk);
      }
    }

    // The implicit barrier of the loop above: every run's partial sums are complete.
    if (per_run > 0) {
#pragma omp for schedule(static)
      for (std::int64_t row = 0; row < v.batch * L; ++row) {
        const std::int64_t b = row / L, t = row % L;
        for (std::int64_t run = 0; run < runs; ++run) {
          const float* part =
              run_partials + per_run * static_cast<std::size_t>(run) + static_cast<std::size_t>(row * N);
          if (partial_B > 0) {
            float* out = g.grad_B.at(b, t, 0);
            for (std::int64_t n = 0; n < N; ++n) out[n] += part[n];
          }
          if (partial_C > 0) {
            float* out = g.grad_C.at(b, t, 0);
            const float* part_C = part + partial_B;
            for (std::int64_t n = 0; n < N; ++n) out[n] += part_C[n];
          }
        }
      }
    }
  }
}

}  // namespace mambakit::scan_fused
