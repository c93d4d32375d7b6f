#pragma once
// What the SSD kernels (ssd/sequential, ssd/chunked) share: strided row access to their
// arguments, the one-token step, and the fixed-order reduction of per-head gradients into
// per-group and per-model ones, which keeps backward independent of the thread count.
//
// Dimensions: B batch, L length, H heads, P head_dim, G groups, N d_state (ssd_kernel.hpp).

#include <cmath>
#include <algorithm>
#include <cstdint>

#include "mambakit/sdk/ssd_kernel.hpp"
#include "mambakit/sdk/util/dtype_dispatch.hpp"
#include "mambakit/sdk/workspace.hpp"

namespace mambakit::ssd_common {

/// A (B, L, X, Y) or (B, L, X) view whose rows (the inner X*Y or X elements) are contiguous.
template <class T>
struct Rows {
  T* data = nullptr;
  std::int64_t batch_stride = 0, row_stride = 0;

  Rows() = default;
  explicit Rows(const sdk::TensorView& view)
      : data(view.as<T>()), batch_stride(view.strides[0]), row_stride(view.strides[1]) {}
  [[nodiscard]] bool present() const { return data != nullptr; }
  /// Row (b, t).
  [[nodiscard]] T* at(std::int64_t b, std::int64_t t) const { return data + b * batch_stride + t * row_stride; }
};

/// The sizes of a problem, read from validated forward arguments.
struct Dims {
  std::int64_t B = 0, L = 0, H = 0, P = 0, G = 0, N = 0;
  [[nodiscard]] std::int64_t heads_per_group() const { return H / G; }
  [[nodiscard]] std::int64_t group_of(std::int64_t h) const { return h / heads_per_group(); }
  [[nodiscard]] std::int64_t state_size() const { return P * N; }
};

inline Dims dims_of(const sdk::SsdForwardArgs& args) {
  return {args.x.shape[0], args.x.shape[1], args.x.shape[2], args.x.shape[3], args.B.shape[2], args.B.shape[3]};
}

/// One token for every (row, head), in parallel over them (ssd_kernel.hpp's recurrence with L = 1):
///   S = exp(dt A) S + dt x B^T,   y = S C + D x.
template <class T>
void step(const sdk::SsdStepArgs& args, int n_threads) {
  const std::int64_t B = args.x.shape[0], H = args.x.shape[1], P = args.x.shape[2];
  const std::int64_t G = args.B.shape[1], N = args.B.shape[2], heads_per_group = H / G;
  const T* A = args.A.as<const T>();
  const T* D = args.D.as<const T>();
#pragma omp parallel for num_threads(n_threads) schedule(static)
  for (std::int64_t task = 0; task < B * H; ++task) {
    const std::int64_t b = task / H, h = task % H, g = h / heads_per_group;
    const T* x = args.x.as<const T>() + b * args.x.strides[0] + h * P;
    const T dt = args.dt.as<const T>()[b * args.dt.strides[0] + h];
    const T* Bg = args.B.as<const T>() + b * args.B.strides[0] + g * N;
    const T* Cg = args.C.as<const T>() + b * args.C.strides[0] + g * N;
    T* state = args.state.as<T>() + (b * H + h) * P * N;
    T* y = args.y.as<T>() + b * args.y.strides[0] + h * P;
    const T decay = std::exp(dt * A[h]);
    for (std::int64_t p = 0; p < P; ++p) {
      T* s = state + p * N;
      const T input = dt * x[p];
      T sum = 0;
      for (std::int64_t n = 0; n < N; ++n) {
        s[n] = decay * s[n] + input * Bg[n];
        sum += s[n] * Cg[n];
      }
      y[p] = sum + (D != nullptr ? D[h] * x[p] : T(0));
    }
  }
}

/// Gradients that several heads or rows add to, kept per (row, head) by the threads and summed
/// in one fixed order at the end: grad_B and grad_C per (b, t, head) (N each), grad_A and
/// grad_D per (b, head). The (b, t, head) slots start uninitialised: the task of (b, head)
/// writes each of its slots once, with `=`, before reduce_into().
template <class T>
class HeadPartials {
 public:
  HeadPartials(const sdk::Context& context, const Dims& dims, const sdk::SsdBackwardArgs& args)
      : dims_(dims),
        rows_size_(dims.B * dims.L * dims.H * dims.N),
        grad_b_(context, args.grad_B.present() ? rows_size_ : 0),
        grad_c_(context, args.grad_C.present() ? rows_size_ : 0),
        scalars_(context, 2 * dims.B * dims.H) {
    std::fill(scalars_.data(), scalars_.data() + 2 * dims.B * dims.H, T(0));
  }

  /// Head h's share of grad_B / grad_C at (b, t), N elements; nullptr when not wanted.
  T* grad_b(std::int64_t b, std::int64_t t, std::int64_t h) { return slot(grad_b_, b, t, h); }
  T* grad_c(std::int64_t b, std::int64_t t, std::int64_t h) { return slot(grad_c_, b, t, h); }
  T& grad_a(std::int64_t b, std::int64_t h) { return scalars_.data()[b * dims_.H + h]; }
  T& grad_d(std::int64_t b, std::int64_t h) { return scalars_.data()[(dims_.B + b) * dims_.H + h]; }

  /// Adds the partial sums to the outputs of `args`, heads and rows in ascending order.
  void reduce_into(const sdk::SsdBackwardArgs& args, int n_threads) {
    const Dims d = dims_;
    const Rows<T> out_b(args.grad_B), out_c(args.grad_C);
#pragma omp parallel for num_threads(n_threads) schedule(static)
    for (std::int64_t row = 0; row < d.B * d.L; ++row) {
      const std::int64_t b = row / d.L, t = row % d.L;
      for (std::int64_t h = 0; h < d.H; ++h) {
        const std::int64_t offset = d.group_of(h) * d.N;
        if (out_b.present()) add(out_b.at(b, t) + offset, grad_b(b, t, h), d.N);
        if (out_c.present()) add(out_c.at(b, t) + offset, grad_c(b, t, h), d.N);
      }
    }
    for (std::int64_t h = 0; h < d.H; ++h) {
      for (std::int64_t b = 0; b < d.B; ++b) {
        if (args.grad_A.present()) args.grad_A.as<T>()[h] += grad_a(b, h);
        if (args.grad_D.present()) args.grad_D.as<T>()[h] += grad_d(b, h);
      }
    }
  }

 private:
  T* slot(sdk::WorkspaceArray<T>& array, std::int64_t b, std::int64_t t, std::int64_t h) {
    return array.data() == nullptr ? nullptr : array.data() + ((b * dims_.L + t) * dims_.H + h) * dims_.N;
  }
  static void add(T* to, const T* from, std::int64_t count) {
    for (std::int64_t i = 0; i < count; ++i) to[i] += from[i];
  }

  Dims dims_;
  std::int64_t rows_size_;
  sdk::WorkspaceArray<T> grad_b_, grad_c_, scalars_;
};

using sdk::util::by_dtype;  // body(T{}) with T = double for f64 problems, float otherwise

/// S (P x N, row-major) = the (b, h) slice `task` of a (B, H, P, N) state, or zeros when the
/// state is absent.
template <class T, class Matrix>
void load_state(const sdk::TensorView& state, std::int64_t task, Matrix& S) {
  if (state.present()) {
    const T* source = state.as<const T>() + task * S.size();
    std::copy(source, source + S.size(), S.data());
  } else {
    std::fill(S.data(), S.data() + S.size(), T(0));
  }
}

/// What the CPU SSD kernels share: the score (`score` for an f32 or f64 problem on the CPU
/// with valid sizes, 0 otherwise) and the one-token step.
class CpuSsdKernel : public sdk::SsdKernel {
 public:
  explicit CpuSsdKernel(std::int32_t score) : score_(score) {}

  std::int32_t score(const sdk::KernelProblem& problem) const noexcept override {
    const bool runs = sdk::ssd_shape(problem).valid && problem.device.type == sdk::DeviceType::kCpu &&
                      (problem.dtype == sdk::DType::kF32 || problem.dtype == sdk::DType::kF64);
    return runs ? score_ : 0;
  }

  sdk::Status step(const sdk::Context& context, const sdk::SsdStepArgs& args) noexcept override {
    return by_dtype(args.x.dtype, [&](auto zero) { ssd_common::step<decltype(zero)>(args, context.n_threads); });
  }

 private:
  std::int32_t score_;
};

}  // namespace mambakit::ssd_common
