#pragma once
// scan/chunked: the selective scan parallel over time within chunks, f32 and f64, stable for
// any length. The recurrence h_t = a_t h_{t-1} + b_t (a_t = exp(dt_t A), b_t = dt_t B_t u_t) is
// linear, so over a chunk [t0, t1) of steps h_{t1-1} = decay * h_{t0-1} + local, with
// decay = prod a_t = exp(A * sum_t dt_t) and local the chunk's end state from a zero start.
// (sum_t dt_t A is the sum of the logs of the a_t; it is formed as A times the sum of dt,
// which is the same number, and exponentiated once: no prefix product is ever divided by,
// which is how the seed's "parallel" scan overflowed within a few hundred steps.)
//
// Forward:
//   1. parallel over (row, chunk): run each chunk from a zero state (chunk 0 from the initial
//      state), writing y_t and keeping the chunk's end state and sum of dt;
//   2. parallel over (row, channel block), sequential over chunks: carry the true state,
//      h_in(c) = h_end(c - 1), h_end(c) = decay(c) h_in(c) + local(c);
//   3. parallel over (row, chunk > 0): y_t += <exp(A * sum_{s=t0..t} dt_s) h_in(c), C_t> silu(z_t).
// Backward: the adjoint g_h runs the same linear recurrence in reverse with the same decays,
// so it is chunked the same way (adjoint of each chunk from zero, carried across chunks
// sequentially); then, in parallel over (row, chunk), each chunk recomputes its states from its
// true h_in and walks back from its true incoming adjoint, adding every gradient. grad_B and
// grad_C rows belong to one (row, chunk); grad_A, grad_D and grad_delta_bias are kept per
// (row, chunk) and summed in (row, chunk) order at the end.
//
// The result does not depend on the thread count: neither the chunk length nor any order of
// additions does (the threads only decide which (row, chunk) or (row, block) runs where).
//
// Dimensions: B batch, L length, E d_inner, N d_state, K chunk length, n_chunks = ceil(L/K),
// W lanes (channels) per block (16 f32, 8 f64), n_blocks = ceil(E/W).

#include <omp.h>

#include <algorithm>
#include <cstdint>

#include "mambakit/sdk/context.hpp"
#include "mambakit/sdk/scan_backend.hpp"
#include "scan_block_kernels.hpp"

namespace mambakit::scan_chunked {

using scan_cpu::Block;
using scan_cpu::BlockGrads;
using scan_cpu::GradViews;
using scan_cpu::ScanViews;
using scan_cpu::Tensor;
using scan_cpu::Vec;

/// How time is cut: chunk c covers [c * chunk, min(L, (c + 1) * chunk)).
struct ChunkPlan {
  std::int64_t length = 0;
  std::int64_t chunk = 0;
  std::int64_t chunks = 0;

  ChunkPlan(std::int64_t length_, std::int64_t chunk_) : length(length_), chunk(chunk_) {
    chunks = (length + chunk - 1) / chunk;
  }
  std::int64_t begin(std::int64_t c) const { return c * chunk; }
  std::int64_t end(std::int64_t c) const { return std::min(length, (c + 1) * chunk); }
};

/// The chunks over the batch that the default chunk length aims at: four per thread for up to
/// 16 threads. A constant, not the thread count: the chunk length decides how the additions
/// are grouped, and so the result's last bits.
inline constexpr std::int64_t kTargetChunks = 64;

/// The chunk length: `configured` when positive, else 256 steps, shortened (to no less than
/// 32) when that leaves fewer than kTargetChunks chunks over the batch.
inline std::int64_t choose_chunk(std::int64_t configured, std::int64_t batch, std::int64_t length) {
  if (configured > 0) return configured;
  const std::int64_t wanted_per_row = std::max<std::int64_t>(1, (kTargetChunks + batch - 1) / batch);
  const std::int64_t even = (length + wanted_per_row - 1) / wanted_per_row;
  return std::clamp<std::int64_t>(even, 32, 256);
}

/// Per-(row, chunk, block) carries: carry[(((b * n_chunks + c) * n_blocks + block) * N + n)]
/// is a vector of W lanes; dt_sum has one vector per (b, c, block).
template <class T>
struct Carries {
  Vec<T>* carry = nullptr;
  Vec<T>* dt_sum = nullptr;
  std::int64_t chunks = 0, blocks = 0, d_state = 0;

  std::int64_t index(std::int64_t b, std::int64_t c, std::int64_t block) const {
    return (b * chunks + c) * blocks + block;
  }
  Vec<T>* state(std::int64_t b, std::int64_t c, std::int64_t block) const {
    return carry + index(b, c, block) * d_state;
  }
  static std::size_t elements(std::int64_t batch, std::int64_t chunks, std::int64_t blocks, std::int64_t d_state) {
    return static_cast<std::size_t>(batch * chunks * blocks * (d_state + 1) * scan_cpu::kWidth<T>);
  }
};

/// Phases 1 and 2 of the forward. After it, carries.state(b, c, block) holds h_in(c), the
/// true state before chunk c (zero for c = 0, whose initial state phase 1 already used), and
/// carries.dt_sum the chunk sums of dt. Writes the chunk-local y when `y` is present and the
/// final state (B, E, N) when `final_state` is present.
template <class T, int kN>
void forward_carries(int threads, const ScanViews<T>& v, const ChunkPlan& plan,
                     const Carries<T>& carries, const Tensor<T>& y, const Tensor<T>& final_state) {
  constexpr int W = scan_cpu::kWidth<T>;
  const std::int64_t blocks = carries.blocks;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (std::int64_t item = 0; item < v.batch * plan.chunks; ++item) {
    const std::int64_t b = item / plan.chunks, c = item % plan.chunks;
    for (std::int64_t block = 0; block < blocks; ++block) {
      const Block<T, kN> blk(v, block * W);
      Vec<T> h[Block<T, kN>::kStates];
      if (c == 0) {
        scan_cpu::load_state(v.initial_state, blk, b, h);
      } else {
        for (int n = 0; n < blk.states(); ++n) h[n] = Vec<T>{};
      }
      Vec<T>* dt_sum = carries.dt_sum + carries.index(b, c, block);
      *dt_sum = Vec<T>{};
      scan_cpu::scan_range(v, blk, b, plan.begin(c), plan.end(c), h, y, dt_sum);
      std::copy_n(h, blk.states(), carries.state(b, c, block));
    }
  }
#pragma omp parallel for num_threads(threads) schedule(static)
  for (std::int64_t item = 0; item < v.batch * blocks; ++item) {
    const std::int64_t b = item / blocks, block = item % blocks;
    const Block<T, kN> blk(v, block * W);
    Vec<T> carry[Block<T, kN>::kStates];
    for (int n = 0; n < blk.states(); ++n) carry[n] = Vec<T>{};
    for (std::int64_t c = 0; c < plan.chunks; ++c) {
      Vec<T>* local = carries.state(b, c, block);
      const Vec<T> dt_sum = carries.dt_sum[carries.index(b, c, block)];
      for (int n = 0; n < blk.states(); ++n) {
        const Vec<T> local_end = local[n];
        local[n] = carry[n];
        carry[n] = sdk::simd::exp(blk.a[n] * dt_sum) * carry[n] + local_end;
      }
    }
    if (final_state.present()) {
      for (int n = 0; n < blk.states(); ++n) {
        sdk::simd::store_strided(final_state.at(b, blk.e0, n), final_state.stride1, carry[n], blk.width);
      }
    }
  }
}

/// y (B, L, E) and, when present, final_state (B, E, N).
template <class T, int kN>
void forward(const sdk::Context& context, const sdk::ScanForwardArgs& args, std::int64_t configured_chunk) {
  constexpr int W = scan_cpu::kWidth<T>;
  const ScanViews<T> v(args);
  const Tensor<T> y(args.y), final_state(args.final_state);
  const int threads = scan_cpu::threads_for(context, v.batch * v.length * v.d_inner * v.d_state);
  const ChunkPlan plan(v.length, choose_chunk(configured_chunk, v.batch, v.length));
  const std::int64_t blocks = (v.d_inner + W - 1) / W;
  const scan_cpu::Scratch<T> scratch(context, Carries<T>::elements(v.batch, plan.chunks, blocks, v.d_state));
  Carries<T> carries;
  carries.chunks = plan.chunks;
  carries.blocks = blocks;
  carries.d_state = v.d_state;
  carries.carry = reinterpret_cast<Vec<T>*>(scratch.data());
  carries.dt_sum = carries.carry + v.batch * plan.chunks * blocks * v.d_state;

  forward_carries<T, kN>(threads, v, plan, carries, y, final_state);
#pragma omp parallel for num_threads(threads) schedule(static)
  for (std::int64_t item = 0; item < v.batch * (plan.chunks - 1); ++item) {
    const std::int64_t b = item / (plan.chunks - 1), c = 1 + item % (plan.chunks - 1);
    for (std::int64_t block = 0; block < blocks; ++block) {
      const Block<T, kN> blk(v, block * W);
      scan_cpu::correct_range(v, blk, b, plan.begin(c), plan.end(c), carries.state(b, c, block), y);
    }
  }
}

/// Every gradient of ScanBackwardArgs that is present, += into it.
template <class T, int kN>
void backward(const sdk::Context& context, const sdk::ScanBackwardArgs& args, std::int64_t configured_chunk) {
  constexpr int W = scan_cpu::kWidth<T>;
  const ScanViews<T> v(args.forward);
  const GradViews<T> g(args);
  const std::int64_t N = v.d_state;
  const int threads = scan_cpu::threads_for(context, v.batch * v.length * v.d_inner * N);
  const ChunkPlan plan(v.length, choose_chunk(configured_chunk, v.batch, v.length));
  const std::int64_t blocks = (v.d_inner + W - 1) / W;

  // Shared: the forward carries, then the adjoint carries (same layout, the chunk's incoming
  // adjoint in place of h_in), then per (row, chunk, block) the N + 2 vectors of its grad_A,
  // grad_D and grad_delta_bias sums. Per thread: backward_range()'s scratch.
  const std::size_t carry_elems = Carries<T>::elements(v.batch, plan.chunks, blocks, N);
  const std::size_t adjoint_elems = static_cast<std::size_t>(v.batch * plan.chunks * blocks * N * W);
  const std::size_t sum_elems = static_cast<std::size_t>(v.batch * plan.chunks * blocks * (N + 2) * W);
  const std::size_t range_elems = scan_cpu::backward_range_scratch(plan.chunk, N, W);
  const scan_cpu::Scratch<T> scratch(context, carry_elems + adjoint_elems + sum_elems + range_elems * threads);
  Carries<T> carries;
  carries.chunks = plan.chunks;
  carries.blocks = blocks;
  carries.d_state = N;
  carries.carry = reinterpret_cast<Vec<T>*>(scratch.data());
  carries.dt_sum = carries.carry + v.batch * plan.chunks * blocks * N;
  Carries<T> adjoints = carries;
  adjoints.carry = reinterpret_cast<Vec<T>*>(scratch.data() + carry_elems);
  // The sums of (row b, chunk c, block): (N + 2) vectors at item_sums + adjoints.index(b, c, block) * (N + 2).
  Vec<T>* item_sums = reinterpret_cast<Vec<T>*>(scratch.data() + carry_elems + adjoint_elems);
  T* thread_scratch = scratch.data() + carry_elems + adjoint_elems + sum_elems;

  forward_carries<T, kN>(threads, v, plan, carries, Tensor<T>{}, Tensor<T>{});

  // The adjoint of each chunk from zero (the last chunk from grad_final_state).
#pragma omp parallel for num_threads(threads) schedule(static)
  for (std::int64_t item = 0; item < v.batch * plan.chunks; ++item) {
    const std::int64_t b = item / plan.chunks, c = item % plan.chunks;
    for (std::int64_t block = 0; block < blocks; ++block) {
      const Block<T, kN> blk(v, block * W);
      Vec<T>* grad_h = adjoints.state(b, c, block);
      if (c == plan.chunks - 1) {
        scan_cpu::load_state(g.grad_final_state, blk, b, grad_h);
      } else {
        for (int n = 0; n < blk.states(); ++n) grad_h[n] = Vec<T>{};
      }
      scan_cpu::adjoint_range(v, g, blk, b, plan.begin(c), plan.end(c), grad_h);
    }
  }
  // Carried backwards across chunks: the adjoint entering chunk c from chunk c + 1.
#pragma omp parallel for num_threads(threads) schedule(static)
  for (std::int64_t item = 0; item < v.batch * blocks; ++item) {
    const std::int64_t b = item / blocks, block = item % blocks;
    const Block<T, kN> blk(v, block * W);
    Vec<T> carry[Block<T, kN>::kStates];
    for (int n = 0; n < blk.states(); ++n) carry[n] = Vec<T>{};
    for (std::int64_t c = plan.chunks - 1; c >= 0; --c) {
      Vec<T>* local = adjoints.state(b, c, block);
      const Vec<T> dt_sum = carries.dt_sum[carries.index(b, c, block)];
      for (int n = 0; n < blk.states(); ++n) {
        const Vec<T> local_out = local[n];
        local[n] = carry[n];
        carry[n] = sdk::simd::exp(blk.a[n] * dt_sum) * carry[n] + local_out;
      }
    }
    if (g.grad_initial_state.present()) {
      for (int n = 0; n < blk.states(); ++n) {
        for (int j = 0; j < blk.width; ++j) *g.grad_initial_state.at(b, blk.e0 + j, n) += carry[n][j];
      }
    }
  }
  // Each chunk from its true state and true incoming adjoint.
#pragma omp parallel num_threads(threads)
  {
    T* mine = thread_scratch + range_elems * static_cast<std::size_t>(omp_get_thread_num());
#pragma omp for schedule(static)
    for (std::int64_t item = 0; item < v.batch * plan.chunks; ++item) {
      const std::int64_t b = item / plan.chunks, c = item % plan.chunks;
      const scan_cpu::RowSink<T> sink_B{g.grad_B.present() ? g.grad_B.at(b, 0, 0) : nullptr, g.grad_B.stride1};
      const scan_cpu::RowSink<T> sink_C{g.grad_C.present() ? g.grad_C.at(b, 0, 0) : nullptr, g.grad_C.stride1};
      for (std::int64_t block = 0; block < blocks; ++block) {
        const Block<T, kN> blk(v, block * W);
        Vec<T> h_start[Block<T, kN>::kStates];
        if (c == 0) {
          scan_cpu::load_state(v.initial_state, blk, b, h_start);
        } else {
          std::copy_n(carries.state(b, c, block), blk.states(), h_start);
        }
        Vec<T> grad_h[Block<T, kN>::kStates];
        std::copy_n(adjoints.state(b, c, block), blk.states(), grad_h);
        if (c == plan.chunks - 1 && g.grad_final_state.present()) {
          Vec<T> grad_final[Block<T, kN>::kStates];
          scan_cpu::load_state(g.grad_final_state, blk, b, grad_final);
          for (int n = 0; n < blk.states(); ++n) grad_h[n] += grad_final[n];
        }
        BlockGrads<T, kN> acc(blk.states());
        scan_cpu::backward_range(v, g, blk, b, plan.begin(c), plan.end(c), h_start, grad_h, sink_B, sink_C, acc,
                                 mine);
        Vec<T>* sums = item_sums + adjoints.index(b, c, block) * (N + 2);
        std::copy_n(acc.grad_a, blk.states(), sums);
        sums[N] = acc.grad_d;
        sums[N + 1] = acc.grad_bias;
      }
    }
  }
  for (std::int64_t block = 0; block < blocks; ++block) {
    const Block<T, kN> blk(v, block * W);
    BlockGrads<T, kN> total(blk.states());
    for (std::int64_t b = 0; b < v.batch; ++b) {
      for (std::int64_t c = 0; c < plan.chunks; ++c) {
        const Vec<T>* sums = item_sums + adjoints.index(b, c, block) * (N + 2);
        for (int n = 0; n < blk.states(); ++n) total.grad_a[n] += sums[n];
        total.grad_d += sums[N];
        total.grad_bias += sums[N + 1];
      }
    }
    total.flush(g, blk);
  }
}

}  // namespace mambakit::scan_chunked
