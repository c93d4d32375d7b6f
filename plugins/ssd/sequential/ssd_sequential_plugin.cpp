// ssd/sequential: the reference SSD scan, the recurrence of ssd_kernel.hpp one token at a time,
// for f32 and f64, forward, backward and step, on the CPU, in parallel over (row, head) pairs.
// Slow and obviously right; `auto` picks it only when nothing faster can run.
//
// Backward keeps every state of a (row, head) pair, (L + 1) x P x N values, and walks back:
//   y_t = S_t C_t + D x_t:        dS += dy C^T,  dC += S_t^T dy,  dD += dy . x,  dx += D dy
//   S_t = e S_{t-1} + dt x B^T:   (e = exp(dt A))
//       dx += dt dS B,  dB += dt dS^T x,  ddt += x . (dS B) + A e <dS, S_{t-1}>,
//       dA += dt e <dS, S_{t-1}>,  dS <- e dS
//
// Dimensions: B batch, L length, H heads, P head_dim, G groups, N d_state.

#include <algorithm>
#include <span>
#include <vector>

#include "mambakit/sdk/plugin.hpp"
#include "ssd_common.hpp"

namespace mambakit::ssd_sequential {

namespace {

using ssd_common::Dims;
using ssd_common::Rows;

template <class T>
void forward(const sdk::SsdForwardArgs& args, int n_threads) {
  const Dims d = ssd_common::dims_of(args);
  const Rows<const T> x(args.x), dt(args.dt), Bm(args.B), Cm(args.C);
  const Rows<T> y(args.y);
  const T* A = args.A.as<const T>();
  const T* D = args.D.as<const T>();
#pragma omp parallel for num_threads(n_threads) schedule(static)
  for (std::int64_t task = 0; task < d.B * d.H; ++task) {
    const std::int64_t b = task / d.H, h = task % d.H, g = d.group_of(h);
    std::vector<T> S(static_cast<std::size_t>(d.state_size()));
    ssd_common::load_state<T>(args.initial_state, task, S);
    for (std::int64_t t = 0; t < d.L; ++t) {
      const T step = dt.at(b, t)[h], decay = std::exp(step * A[h]);
      const T* xt = x.at(b, t) + h * d.P;
      const T* Bt = Bm.at(b, t) + g * d.N;
      const T* Ct = Cm.at(b, t) + g * d.N;
      T* yt = y.at(b, t) + h * d.P;
      for (std::int64_t p = 0; p < d.P; ++p) {
        T* s = S.data() + p * d.N;
        T sum = 0;
        for (std::int64_t n = 0; n < d.N; ++n) {
          s[n] = decay * s[n] + step * xt[p] * Bt[n];
          sum += s[n] * Ct[n];
        }
        yt[p] = sum + (D != nullptr ? D[h] * xt[p] : T(0));
      }
    }
    if (args.final_state.present()) std::copy(S.begin(), S.end(), args.final_state.as<T>() + task * d.state_size());
  }
}

template <class T>
void backward(const sdk::Context& context, const sdk::SsdBackwardArgs& args) {
  const sdk::SsdForwardArgs& in = args.forward;
  const Dims d = ssd_common::dims_of(in);
  const Rows<const T> x(in.x), dt(in.dt), Bm(in.B), Cm(in.C), gy(args.grad_y);
  const Rows<T> gx(args.grad_x), gdt(args.grad_dt);
  const T* A = in.A.as<const T>();
  const T* D = in.D.as<const T>();
  const std::int64_t size = d.state_size();
  ssd_common::HeadPartials<T> partials(context, d, args);
#pragma omp parallel for num_threads(context.n_threads) schedule(static)
  for (std::int64_t task = 0; task < d.B * d.H; ++task) {
    const std::int64_t b = task / d.H, h = task % d.H, g = d.group_of(h);
    // states[t + 1] = S_t; states[0] = S_{-1}.
    std::vector<T> states(static_cast<std::size_t>((d.L + 1) * size));
    std::span<T> first(states.data(), static_cast<std::size_t>(size));
    ssd_common::load_state<T>(in.initial_state, task, first);
    for (std::int64_t t = 0; t < d.L; ++t) {
      const T step = dt.at(b, t)[h], decay = std::exp(step * A[h]);
      const T* xt = x.at(b, t) + h * d.P;
      const T* Bt = Bm.at(b, t) + g * d.N;
      const T* previous = states.data() + t * size;
      T* next = states.data() + (t + 1) * size;
      for (std::int64_t p = 0; p < d.P; ++p) {
        for (std::int64_t n = 0; n < d.N; ++n) next[p * d.N + n] = decay * previous[p * d.N + n] + step * xt[p] * Bt[n];
      }
    }
    std::vector<T> dS(static_cast<std::size_t>(size)), dS_B(static_cast<std::size_t>(d.P));
    ssd_common::load_state<T>(args.grad_final_state, task, dS);
    T grad_a = 0, grad_d = 0;
    for (std::int64_t t = d.L - 1; t >= 0; --t) {
      const T step = dt.at(b, t)[h], decay = std::exp(step * A[h]);
      const T* xt = x.at(b, t) + h * d.P;
      const T* Bt = Bm.at(b, t) + g * d.N;
      const T* Ct = Cm.at(b, t) + g * d.N;
      const T* dy = gy.at(b, t) + h * d.P;
      const T* S = states.data() + (t + 1) * size;
      const T* previous = states.data() + t * size;
      T* dC = partials.grad_c(b, t, h);
      T* dB = partials.grad_b(b, t, h);
      if (dC != nullptr) std::fill(dC, dC + d.N, T(0));
      if (dB != nullptr) std::fill(dB, dB + d.N, T(0));
      T* dx = gx.present() ? gx.at(b, t) + h * d.P : nullptr;
      // y_t = S_t C_t + D x_t
      for (std::int64_t p = 0; p < d.P; ++p) {
        for (std::int64_t n = 0; n < d.N; ++n) {
          dS[p * d.N + n] += dy[p] * Ct[n];
          if (dC != nullptr) dC[n] += S[p * d.N + n] * dy[p];
        }
        if (D != nullptr) {
          grad_d += dy[p] * xt[p];
          if (dx != nullptr) dx[p] += D[h] * dy[p];
        }
      }
      // S_t = e S_{t-1} + dt x B^T
      T dot_previous = 0, dot_input = 0;
      for (std::int64_t p = 0; p < d.P; ++p) {
        T sum = 0;
        for (std::int64_t n = 0; n < d.N; ++n) {
          sum += dS[p * d.N + n] * Bt[n];
          dot_previous += dS[p * d.N + n] * previous[p * d.N + n];
        }
        dS_B[static_cast<std::size_t>(p)] = sum;
        dot_input += xt[p] * sum;
        if (dx != nullptr) dx[p] += step * sum;
      }
      if (dB != nullptr) {
        for (std::int64_t n = 0; n < d.N; ++n) {
          T sum = 0;
          for (std::int64_t p = 0; p < d.P; ++p) sum += dS[p * d.N + n] * xt[p];
          dB[n] += step * sum;
        }
      }
      if (gdt.present()) gdt.at(b, t)[h] += dot_input + A[h] * decay * dot_previous;
      grad_a += step * decay * dot_previous;
      for (auto& value : dS) value *= decay;
    }
    partials.grad_a(b, h) = grad_a;
    partials.grad_d(b, h) = grad_d;
    if (args.grad_initial_state.present()) {
      T* grad_initial = args.grad_initial_state.as<T>() + task * size;
      for (std::int64_t i = 0; i < size; ++i) grad_initial[i] += dS[static_cast<std::size_t>(i)];
    }
  }
  partials.reduce_into(args, context.n_threads);
}

class SequentialSsd final : public ssd_common::CpuSsdKernel {
 public:
  explicit SequentialSsd(const char* /*config_json*/) : CpuSsdKernel(1) {}

  sdk::Status forward(const sdk::Context& context, const sdk::SsdForwardArgs& args) noexcept override {
    return ssd_common::by_dtype(args.x.dtype,
                                [&](auto zero) { ssd_sequential::forward<decltype(zero)>(args, context.n_threads); });
  }

  sdk::Status backward(const sdk::Context& context, const sdk::SsdBackwardArgs& args) noexcept override {
    return ssd_common::by_dtype(args.forward.x.dtype,
                                [&](auto zero) { ssd_sequential::backward<decltype(zero)>(context, args); });
  }
};

sdk::Status register_components(sdk::Registrar& registrar) noexcept {
  return registrar.add_kernel(sdk::kSsdKind, "sequential",
                              "reference SSD scan (Mamba-2), one token at a time (f32, f64; CPU)",
                              &sdk::create_component<sdk::Kernel, SequentialSsd>);
}

}  // namespace
}  // namespace mambakit::ssd_sequential

MAMBAKIT_PLUGIN("ssd-sequential", "0.1.0", mambakit::ssd_sequential::register_components)
