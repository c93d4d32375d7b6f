#pragma once
// The Mamba-1 selective scan on one block of W contiguous channels (W = 16 f32 or 8 f64 lanes,
// one 64-byte vector), the building block of scan/fused and scan/chunked.
//
// Mamba-1 (Gu & Dao 2023, Algorithm 2: zero-order hold for A, Euler step for B), per channel e
// and step t:
//   dt_t = softplus(delta_t + delta_bias[e]),  h_t = exp(dt_t A[e]) h_{t-1} + dt_t B_t u_t,
//   y_t  = (<h_t, C_t> + D[e] u_t) * silu(z_t).
// A block keeps its N state vectors (one lane per channel) in local arrays, registers when N
// is a compile-time constant (kN > 0; kN == 0 means N known at run time, at most
// kMaxDState), and walks time in order with softplus, the discretisation exp(dt A), the D skip
// and the silu(z) gate fused into the loop, so no (B, L, E, N) tensor exists anywhere.
// B_t and C_t are shared by all channels of a row and are broadcast.
//
// Backward (recompute, no stored activations): the adjoint g_h of h_t runs in reverse,
//   g_h += g_y0 C_t;  grads of dt, A, B, u from g_h;  g_h *= exp(dt_t A)
// with g_y0 = g_y silu(z_t) (ScanBackwardArgs' += convention for every gradient). The states
// of a time range are recomputed forward from the state at its start and kept for the reverse
// walk of that range only.
//
// Dimensions: B batch, L length, E d_inner, N d_state, W lanes per block. Lanes past the last
// channel of E are zero and stay zero.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <new>

#include "mambakit/sdk/context.hpp"
#include "mambakit/sdk/scan_backend.hpp"
#include "mambakit/sdk/util/simd.hpp"

namespace mambakit::scan_cpu {

using sdk::simd::kWidth;
using sdk::simd::Vec;

/// Largest d_state the block kernels handle (the local arrays are sized by it when N is a
/// run-time value).
inline constexpr int kMaxDState = 256;

/// A typed view of rank 1..3 whose last stride is 1: the base pointer and the outer strides.
template <class T>
struct Tensor {
  T* data = nullptr;
  std::int64_t stride0 = 0;
  std::int64_t stride1 = 0;

  Tensor() = default;
  explicit Tensor(const sdk::TensorView& view) : data(static_cast<T*>(view.data)) {
    if (view.rank >= 2) stride0 = view.strides[0];
    if (view.rank >= 3) stride1 = view.strides[1];
  }
  [[nodiscard]] bool present() const { return data != nullptr; }
  T* at(std::int64_t i) const { return data + i; }
  T* at(std::int64_t i, std::int64_t j) const { return data + i * stride0 + j; }
  T* at(std::int64_t i, std::int64_t j, std::int64_t k) const { return data + i * stride0 + j * stride1 + k; }
};

/// The forward inputs, typed. u, delta, z: (B, L, E); B, C: (B, L, N); A: (E, N); D,
/// delta_bias: (E); initial_state: (B, E, N).
template <class T>
struct ScanViews {
  Tensor<const T> u, delta, A, B, C, D, z, delta_bias, initial_state;
  bool delta_softplus = true;
  std::int64_t batch = 0, length = 0, d_inner = 0, d_state = 0;

  explicit ScanViews(const sdk::ScanForwardArgs& args)
      : u(args.u), delta(args.delta), A(args.A), B(args.B), C(args.C), D(args.D), z(args.z),
        delta_bias(args.delta_bias), initial_state(args.initial_state), delta_softplus(args.delta_softplus),
        batch(args.u.shape[0]), length(args.u.shape[1]), d_inner(args.u.shape[2]), d_state(args.A.shape[1]) {}
};

/// The gradient views of a backward call (absent ones are not computed). grad_y, grad_u,
/// grad_delta, grad_z: (B, L, E); grad_B, grad_C: (B, L, N); grad_A: (E, N); grad_D,
/// grad_delta_bias: (E); grad_final_state, grad_initial_state: (B, E, N).
template <class T>
struct GradViews {
  Tensor<const T> grad_y, grad_final_state;
  Tensor<T> grad_u, grad_delta, grad_A, grad_B, grad_C, grad_D, grad_z, grad_delta_bias, grad_initial_state;

  explicit GradViews(const sdk::ScanBackwardArgs& args)
      : grad_y(args.grad_y), grad_final_state(args.grad_final_state), grad_u(args.grad_u),
        grad_delta(args.grad_delta), grad_A(args.grad_A), grad_B(args.grad_B), grad_C(args.grad_C),
        grad_D(args.grad_D), grad_z(args.grad_z), grad_delta_bias(args.grad_delta_bias),
        grad_initial_state(args.grad_initial_state) {}
};

/// Scratch memory of `count` elements of T for one call, aligned to 64 bytes: from the
/// context's workspace when the host gave one, else from the heap. Allocate before a parallel
/// region, never inside. Contents are uninitialised.
template <class T>
class Scratch {
 public:
  Scratch(const sdk::Context& context, std::size_t count) {
    if (count == 0) return;
    const std::size_t bytes = count * sizeof(T);
    if (context.workspace != nullptr) {
      data_ = static_cast<T*>(context.workspace->allocate(bytes, kAlignment));
      if (data_ != nullptr) workspace_ = context.workspace;
    }
    if (data_ == nullptr) data_ = static_cast<T*>(::operator new(bytes, std::align_val_t{kAlignment}));
  }
  ~Scratch() {
    if (workspace_ != nullptr) {
      workspace_->deallocate(data_);
    } else if (data_ != nullptr) {
      ::operator delete(data_, std::align_val_t{kAlignment});
    }
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;

  T* data() const { return data_; }

 private:
  static constexpr std::size_t kAlignment = 64;
  T* data_ = nullptr;
  sdk::WorkspaceAllocator* workspace_ = nullptr;
};

/// `count` rounded up to a whole number of vectors of T, so that slices of a Scratch stay
/// 64-byte aligned.
template <class T>
constexpr std::size_t round_to_vectors(std::size_t count) {
  constexpr std::size_t w = kWidth<T>;
  return (count + w - 1) / w * w;
}

/// Problems with fewer state updates than this (B * L * E * N, or B * E * N for a step) run on
/// the calling thread: opening a parallel region costs microseconds, and far more when the
/// machine is busy and a worker waits for a core, while this much work takes ~20 us.
inline constexpr std::int64_t kMinParallelWork = std::int64_t{1} << 16;

/// The thread count for a call doing `work` state updates: context.n_threads, or 1 when the
/// work is too small to share.
inline int threads_for(const sdk::Context& context, std::int64_t work) {
  return work < kMinParallelWork ? 1 : std::max(1, context.n_threads);
}

/// Calls `body.template operator()<kN>()` with kN = N for the d_state values compiled with a
/// fixed count (4, 8, 16: Mamba's 16 and small test sizes), kN = 0 otherwise.
template <class Body>
void dispatch_d_state(std::int64_t d_state, Body&& body) {
  switch (d_state) {
    case 4: body.template operator()<4>(); break;
    case 8: body.template operator()<8>(); break;
    case 16: body.template operator()<16>(); break;
    default: body.template operator()<0>(); break;
  }
}

/// What stays fixed for a channel block [e0, e0 + width): A transposed to a[n] (lane j =
/// A[e0 + j, n]), D and delta_bias as vectors (zero when absent).
template <class T, int kN>
struct Block {
  static constexpr int kStates = kN > 0 ? kN : kMaxDState;
  using V = Vec<T>;

  std::int64_t e0 = 0;
  int width = 0;
  int d_state = 0;
  V a[kStates];
  V d_skip{};
  V bias{};

  Block(const ScanViews<T>& v, std::int64_t e0_) : e0(e0_) {
    width = static_cast<int>(std::min<std::int64_t>(kWidth<T>, v.d_inner - e0));
    d_state = kN > 0 ? kN : static_cast<int>(v.d_state);
    for (int n = 0; n < d_state; ++n) a[n] = sdk::simd::load_strided(v.A.at(e0, n), v.A.stride0, width);
    if (v.D.present()) d_skip = sdk::simd::load(v.D.at(e0), width);
    if (v.delta_bias.present()) bias = sdk::simd::load(v.delta_bias.at(e0), width);
  }
  int states() const { return kN > 0 ? kN : d_state; }
};

/// How many steps ahead the (B, L, E) rows of a block are prefetched. A block reads one cache
/// line per row and step, E elements after the previous one: a new page every step or so,
/// which hardware prefetchers do not follow, so without this every step waits for memory.
inline constexpr std::int64_t kPrefetchSteps = 8;

/// Prefetches element (b, t, e) of x for reading (absent views: nothing).
template <class T>
[[gnu::always_inline]] inline void prefetch_read(const Tensor<T>& x, std::int64_t b, std::int64_t t, std::int64_t e) {
  if (x.present()) __builtin_prefetch(x.at(b, t, e), 0);
}

/// Prefetches element (b, t, e) of x for writing (absent views: nothing).
template <class T>
[[gnu::always_inline]] inline void prefetch_write(const Tensor<T>& x, std::int64_t b, std::int64_t t, std::int64_t e) {
  if (x.present()) __builtin_prefetch(x.at(b, t, e), 1);
}

/// Prefetches the forward inputs u, delta, z of row b, step t for the block.
template <class T, int kN>
[[gnu::always_inline]] inline void prefetch_inputs(const ScanViews<T>& v, const Block<T, kN>& blk, std::int64_t b,
                                                   std::int64_t t) {
  prefetch_read(v.u, b, t, blk.e0);
  prefetch_read(v.delta, b, t, blk.e0);
  prefetch_read(v.z, b, t, blk.e0);
}

/// delta + delta_bias of row b, step t, for the block's lanes: dt before the softplus.
template <class T, int kN>
[[gnu::always_inline]] inline Vec<T> raw_dt(const ScanViews<T>& v, const Block<T, kN>& blk, std::int64_t b,
                                            std::int64_t t) {
  return sdk::simd::load(v.delta.at(b, t, blk.e0), blk.width) + blk.bias;
}

template <class T>
[[gnu::always_inline]] inline Vec<T> activate_dt(const ScanViews<T>& v, Vec<T> raw) {
  return v.delta_softplus ? sdk::simd::softplus(raw) : raw;
}

/// Loads state (b, e0.., n) for n < N into h (zeros when `state` is absent). state: (B, E, N).
template <class T, int kN>
inline void load_state(const Tensor<const T>& state, const Block<T, kN>& blk, std::int64_t b, Vec<T>* h) {
  for (int n = 0; n < blk.states(); ++n) {
    h[n] = state.present() ? sdk::simd::load_strided(state.at(b, blk.e0, n), state.stride1, blk.width) : Vec<T>{};
  }
}

/// Runs the recurrence of row b over steps [t0, t1) from the state h (in/out, N vectors).
/// When `y` is present, writes y_t (B, L, E). When `dt_sum` is given, adds sum_t dt_t to it.
template <class T, int kN>
inline void scan_range(const ScanViews<T>& v, const Block<T, kN>& blk, std::int64_t b, std::int64_t t0,
                       std::int64_t t1, Vec<T>* __restrict h, const Tensor<T>& y, Vec<T>* dt_sum) {
  using V = Vec<T>;
  const int N = blk.states();
  V sum{};
  for (std::int64_t t = t0; t < t1; ++t) {
    if (t + kPrefetchSteps < t1) {
      prefetch_inputs(v, blk, b, t + kPrefetchSteps);
      prefetch_write(y, b, t + kPrefetchSteps, blk.e0);
    }
    const V u = sdk::simd::load(v.u.at(b, t, blk.e0), blk.width);
    const V dt = activate_dt(v, raw_dt(v, blk, b, t));
    const V dtu = dt * u;
    sum += dt;
    const T* B_t = v.B.at(b, t, 0);
    if (y.present()) {
      const T* C_t = v.C.at(b, t, 0);
      V out = blk.d_skip * u;
#pragma GCC unroll 16
      for (int n = 0; n < N; ++n) {
        h[n] = sdk::simd::exp(dt * blk.a[n]) * h[n] + dtu * B_t[n];
        out += h[n] * C_t[n];
      }
      if (v.z.present()) {
        const V z = sdk::simd::load(v.z.at(b, t, blk.e0), blk.width);
        out *= z * sdk::simd::sigmoid(z);
      }
      sdk::simd::store(y.at(b, t, blk.e0), out, blk.width);
    } else {
#pragma GCC unroll 16
      for (int n = 0; n < N; ++n) h[n] = sdk::simd::exp(dt * blk.a[n]) * h[n] + dtu * B_t[n];
    }
  }
  if (dt_sum != nullptr) *dt_sum += sum;
}

/// scan/chunked's output correction for steps [t0, t1) of row b, given the true state h_in
/// before t0 that scan_range() did not see: h_t = h_local_t + exp(A * sum_{s=t0..t} dt_s) h_in,
/// so y_t += <exp(A S_t) h_in, C_t> silu(z_t) with S_t the running sum of dt (a sum of logs,
/// no division). y: (B, L, E), read and written.
template <class T, int kN>
inline void correct_range(const ScanViews<T>& v, const Block<T, kN>& blk, std::int64_t b, std::int64_t t0,
                          std::int64_t t1, const Vec<T>* __restrict h_in, const Tensor<T>& y) {
  using V = Vec<T>;
  const int N = blk.states();
  V cumulative{};
  for (std::int64_t t = t0; t < t1; ++t) {
    if (t + kPrefetchSteps < t1) {
      prefetch_read(v.delta, b, t + kPrefetchSteps, blk.e0);
      prefetch_read(v.z, b, t + kPrefetchSteps, blk.e0);
      prefetch_write(y, b, t + kPrefetchSteps, blk.e0);
    }
    cumulative += activate_dt(v, raw_dt(v, blk, b, t));
    const T* C_t = v.C.at(b, t, 0);
    V correction{};
    for (int n = 0; n < N; ++n) correction += sdk::simd::exp(blk.a[n] * cumulative) * h_in[n] * C_t[n];
    if (v.z.present()) {
      const V z = sdk::simd::load(v.z.at(b, t, blk.e0), blk.width);
      correction *= z * sdk::simd::sigmoid(z);
    }
    T* out = y.at(b, t, blk.e0);
    sdk::simd::store(out, sdk::simd::load(out, blk.width) + correction, blk.width);
  }
}

/// g_y0 = dL/dy0 where y = y0 * silu(z): grad_y * silu(z), or grad_y without z.
template <class T, int kN>
[[gnu::always_inline]] inline Vec<T> grad_pre_gate(const ScanViews<T>& v, const GradViews<T>& g,
                                                   const Block<T, kN>& blk, std::int64_t b, std::int64_t t) {
  const Vec<T> grad_y = sdk::simd::load(g.grad_y.at(b, t, blk.e0), blk.width);
  if (!v.z.present()) return grad_y;
  const Vec<T> z = sdk::simd::load(v.z.at(b, t, blk.e0), blk.width);
  return grad_y * z * sdk::simd::sigmoid(z);
}

/// The adjoint recurrence alone over steps [t0, t1) of row b, in reverse, from g_h (in/out):
/// g_h += g_y0 C_t; g_h *= exp(dt_t A). scan/chunked's first backward phase.
template <class T, int kN>
inline void adjoint_range(const ScanViews<T>& v, const GradViews<T>& g, const Block<T, kN>& blk, std::int64_t b,
                          std::int64_t t0, std::int64_t t1, Vec<T>* __restrict grad_h) {
  using V = Vec<T>;
  const int N = blk.states();
  for (std::int64_t t = t1 - 1; t >= t0; --t) {
    if (t - kPrefetchSteps >= t0) {
      prefetch_read(v.delta, b, t - kPrefetchSteps, blk.e0);
      prefetch_read(v.z, b, t - kPrefetchSteps, blk.e0);
      prefetch_read(g.grad_y, b, t - kPrefetchSteps, blk.e0);
    }
    const V dt = activate_dt(v, raw_dt(v, blk, b, t));
    const V grad_y0 = grad_pre_gate(v, g, blk, b, t);
    const T* C_t = v.C.at(b, t, 0);
    for (int n = 0; n < N; ++n) grad_h[n] = (grad_h[n] + grad_y0 * C_t[n]) * sdk::simd::exp(dt * blk.a[n]);
  }
}

/// Per-block gradient accumulators that are reduced over rows and time: grad_A (N vectors),
/// grad_D and grad_delta_bias, lane j for channel e0 + j.
template <class T, int kN>
struct BlockGrads {
  Vec<T> grad_a[Block<T, kN>::kStates];
  Vec<T> grad_d{};
  Vec<T> grad_bias{};

  explicit BlockGrads(int d_state) {
    for (int n = 0; n < d_state; ++n) grad_a[n] = Vec<T>{};
  }

  /// Adds the accumulators into grad_A (E, N), grad_D (E), grad_delta_bias (E) (the present
  /// ones) for the block's channels.
  void flush(const GradViews<T>& g, const Block<T, kN>& blk) const {
    for (int j = 0; j < blk.width; ++j) {
      const std::int64_t e = blk.e0 + j;
      if (g.grad_A.present()) {
        for (int n = 0; n < blk.states(); ++n) *g.grad_A.at(e, n) += grad_a[n][j];
      }
      if (g.grad_D.present()) *g.grad_D.at(e) += grad_d[j];
      if (g.grad_delta_bias.present()) *g.grad_delta_bias.at(e) += grad_bias[j];
    }
  }
};

/// Where the (B, L, N) gradients grad_B and grad_C of one row go: element (t, n) at
/// data[t * stride_t + n], += (absent when data is null). The block sums its lanes into it.
template <class T>
struct RowSink {
  T* data = nullptr;
  std::int64_t stride_t = 0;
};

/// Per-call scratch of backward_range(), in elements of T, for ranges of up to `max_steps`.
inline std::size_t backward_range_scratch(std::int64_t max_steps, std::int64_t d_state, int width) {
  return static_cast<std::size_t>(((max_steps + 1) * d_state + max_steps) * width);
}

/// Backward over steps [t0, t1) of row b: recomputes h_t forward from h_start (the state
/// before t0), then walks back from g_h (in/out: the adjoint arriving from step t1, left as the
/// one leaving towards t0 - 1), adding every requested gradient: grad_u, grad_delta, grad_z
/// (B, L, E) directly, grad_B and grad_C through the row sinks, grad_A, grad_D and
/// grad_delta_bias into `acc`. `scratch` holds backward_range_scratch(t1 - t0, N, W) elements.
template <class T, int kN>
inline void backward_range(const ScanViews<T>& v, const GradViews<T>& g, const Block<T, kN>& blk, std::int64_t b,
                           std::int64_t t0, std::int64_t t1, const Vec<T>* h_start, Vec<T>* __restrict grad_h,
                           RowSink<T> sink_B, RowSink<T> sink_C, BlockGrads<T, kN>& acc, T* scratch) {
  using V = Vec<T>;
  const int N = blk.states();
  const std::int64_t steps = t1 - t0;
  // states[i * N + n] = h_{t0 - 1 + i}, i = 0..steps; dts[i] = dt_{t0 + i}.
  V* states = reinterpret_cast<V*>(scratch);
  V* dts = states + (steps + 1) * N;
  for (int n = 0; n < N; ++n) states[n] = h_start[n];
  for (std::int64_t i = 0; i < steps; ++i) {
    const std::int64_t t = t0 + i;
    if (t + kPrefetchSteps < t1) prefetch_inputs(v, blk, b, t + kPrefetchSteps);
    const V u = sdk::simd::load(v.u.at(b, t, blk.e0), blk.width);
    const V dt = activate_dt(v, raw_dt(v, blk, b, t));
    dts[i] = dt;
    const V dtu = dt * u;
    const T* B_t = v.B.at(b, t, 0);
    const V* prev = states + i * N;
    V* next = states + (i + 1) * N;
    for (int n = 0; n < N; ++n) next[n] = sdk::simd::exp(dt * blk.a[n]) * prev[n] + dtu * B_t[n];
  }
  for (std::int64_t i = steps - 1; i >= 0; --i) {
    const std::int64_t t = t0 + i;
    if (t - kPrefetchSteps >= t0) {
      const std::int64_t ahead = t - kPrefetchSteps;
      prefetch_read(g.grad_y, b, ahead, blk.e0);
      prefetch_write(g.grad_u, b, ahead, blk.e0);
      prefetch_write(g.grad_delta, b, ahead, blk.e0);
      prefetch_write(g.grad_z, b, ahead, blk.e0);
    }
    const V* h_t = states + (i + 1) * N;
    const V* h_prev = states + i * N;
    const V u = sdk::simd::load(v.u.at(b, t, blk.e0), blk.width);
    const V dt = dts[i];
    const T* B_t = v.B.at(b, t, 0);
    const T* C_t = v.C.at(b, t, 0);
    const V grad_y = sdk::simd::load(g.grad_y.at(b, t, blk.e0), blk.width);
    V grad_y0 = grad_y;
    if (v.z.present()) {
      const V z = sdk::simd::load(v.z.at(b, t, blk.e0), blk.width);
      const V s = sdk::simd::sigmoid(z);
      grad_y0 = grad_y * z * s;
      if (g.grad_z.present()) {
        V y0 = blk.d_skip * u;
        for (int n = 0; n < N; ++n) y0 += h_t[n] * C_t[n];
        T* out = g.grad_z.at(b, t, blk.e0);
        const V grad_z = grad_y * y0 * s * (T(1) + z * (T(1) - s));
        sdk::simd::store(out, sdk::simd::load(out, blk.width) + grad_z, blk.width);
      }
    }
    V grad_u = blk.d_skip * grad_y0;
    acc.grad_d += grad_y0 * u;
    V grad_dt{};
    const V dtu = dt * u;
    T* row_B = sink_B.data != nullptr ? sink_B.data + t * sink_B.stride_t : nullptr;
    T* row_C = sink_C.data != nullptr ? sink_C.data + t * sink_C.stride_t : nullptr;
    for (int n = 0; n < N; ++n) {
      grad_h[n] += grad_y0 * C_t[n];
      if (row_C != nullptr) row_C[n] += sdk::simd::hsum(grad_y0 * h_t[n]);
      const V decay = sdk::simd::exp(dt * blk.a[n]);
      const V decayed = decay * h_prev[n];
      grad_dt += grad_h[n] * (blk.a[n] * decayed + B_t[n] * u);
      acc.grad_a[n] += grad_h[n] * dt * decayed;
      if (row_B != nullptr) row_B[n] += sdk::simd::hsum(grad_h[n] * dtu);
      grad_u += grad_h[n] * dt * B_t[n];
      grad_h[n] *= decay;
    }
    if (g.grad_u.present()) {
      T* out = g.grad_u.at(b, t, blk.e0);
      sdk::simd::store(out, sdk::simd::load(out, blk.width) + grad_u, blk.width);
    }
    V grad_raw = grad_dt;
    if (v.delta_softplus) {
      const V raw = raw_dt(v, blk, b, t);
      grad_raw = raw > T(20) ? grad_dt : grad_dt * sdk::simd::sigmoid(raw);
    }
    if (g.grad_delta.present()) {
      T* out = g.grad_delta.at(b, t, blk.e0);
      sdk::simd::store(out, sdk::simd::load(out, blk.width) + grad_raw, blk.width);
    }
    acc.grad_bias += grad_raw;
  }
}

/// One decode step (ScanStepArgs): per (row, channel) the N-vector state is updated in place
/// and y written. Vectorised over the channels of a block for dt and the gate, then over
/// the N states of each channel (contiguous in the (B, E, N) state; kN as in Block). Parallel
/// over (row, channel block).
template <class T, int kN>
void scan_step(const sdk::Context& context, const sdk::ScanStepArgs& args) {
  using V = Vec<T>;
  constexpr int W = kWidth<T>;
  // u, delta, z, y: (B, E); B, C: (B, N); A: (E, N); D, delta_bias: (E); state: (B, E, N).
  const Tensor<const T> u(args.u), delta(args.delta), A(args.A), B(args.B), C(args.C), D(args.D), z(args.z),
      delta_bias(args.delta_bias);
  const Tensor<T> state(args.state), y(args.y);
  const std::int64_t batch = args.u.shape[0], d_inner = args.u.shape[1];
  const std::int64_t d_state = kN > 0 ? kN : args.A.shape[1];
  const std::int64_t blocks = (d_inner + W - 1) / W;
  const int threads = threads_for(context, batch * d_inner * d_state);
  auto step_block = [&](std::int64_t item) {
    const std::int64_t b = item / blocks;
    const std::int64_t e0 = (item % blocks) * W;
    const int width = static_cast<int>(std::min<std::int64_t>(W, d_inner - e0));
    const V x = sdk::simd::load(u.at(b, e0), width);
    V dt = sdk::simd::load(delta.at(b, e0), width);
    if (delta_bias.present()) dt += sdk::simd::load(delta_bias.at(e0), width);
    if (args.delta_softplus) dt = sdk::simd::softplus(dt);
    V gate = sdk::simd::splat(T(1));
    if (z.present()) {
      const V zv = sdk::simd::load(z.at(b, e0), width);
      gate = zv * sdk::simd::sigmoid(zv);
    }
    V out = D.present() ? sdk::simd::load(D.at(e0), width) * x : V{};
    const T* B_b = B.at(b, 0);
    const T* C_b = C.at(b, 0);
    // Per-channel scalars in plain arrays: indexing a vector lane by a loop variable would go
    // through memory on every access.
    alignas(64) T dt_lanes[W], dtu_lanes[W], dots[W];
    sdk::simd::store(dt_lanes, dt, W);
    sdk::simd::store(dtu_lanes, dt * x, W);
    for (int j = 0; j < width; ++j) {
      const std::int64_t e = e0 + j;
      const T dt_e = dt_lanes[j];
      const T dtu = dtu_lanes[j];
      T* h = state.at(b, e, 0);
      const T* a = A.at(e, 0);
      V dot{};
      for (std::int64_t n0 = 0; n0 < d_state; n0 += W) {
        const int count = static_cast<int>(std::min<std::int64_t>(W, d_state - n0));
        const V h_new = sdk::simd::exp(sdk::simd::load(a + n0, count) * dt_e) * sdk::simd::load(h + n0, count) +
                        dtu * sdk::simd::load(B_b + n0, count);
        sdk::simd::store(h + n0, h_new, count);
        dot += h_new * sdk::simd::load(C_b + n0, count);
      }
      dots[j] = sdk::simd::hsum(dot);
    }
    out += sdk::simd::load(dots, width);
    sdk::simd::store(y.at(b, e0), out * gate, width);
  };
  if (threads == 1) {  // a caller's thread scanning its own channels: no nested team
    for (std::int64_t item = 0; item < batch * blocks; ++item) step_block(item);
    return;
  }
#pragma omp parallel for num_threads(threads) schedule(static)
  for (std::int64_t item = 0; item < batch * blocks; ++item) step_block(item);
}

}  // namespace mambakit::scan_cpu
