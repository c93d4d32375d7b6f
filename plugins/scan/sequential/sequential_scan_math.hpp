#pragma once
// The selective scan written as plainly as possible: the oracle every other backend is
// checked against. One (row, channel) pair at a time, time in order, state in registers of T.
//
// Mamba-1 (Gu & Dao 2023, Algorithm 2, with the zero-order-hold discretisation of A and the
// Euler step for B): per channel e and step t,
//   dt_t = softplus(delta_t + delta_bias[e]),  h_t = exp(dt_t A[e]) h_{t-1} + dt_t B_t u_t,
//   y_t  = <h_t, C_t> + D[e] u_t,              y_t *= silu(z_t).
// Backward walks time in reverse with the adjoint g_h of h_t, recomputing h_t from a forward
// pass kept per (row, channel).
//
// Dimensions: B batch, L length, E d_inner, N d_state.

#include <cmath>
#include <cstdint>
#include <vector>

#include "mambakit/sdk/scan_backend.hpp"
#include "strided.hpp"

namespace mambakit::scan_sequential {

template <class T>
T softplus(T v) {
  return v > T(20) ? v : std::log1p(std::exp(v));
}

template <class T>
T sigmoid(T v) {
  return T(1) / (T(1) + std::exp(-v));
}

/// The inputs of one scan, typed. `u`, `delta`, `z`: (B, L, E); `B`, `C`: (B, L, N); `A`: (E, N).
template <class T>
struct ScanInputs {
  Strided<const T> u, delta, A, B, C, D, z, delta_bias, initial_state;
  bool delta_softplus = true;
  std::int64_t batch = 0, length = 0, d_inner = 0, d_state = 0;

  explicit ScanInputs(const sdk::ScanForwardArgs& args)
      : u(args.u), delta(args.delta), A(args.A), B(args.B), C(args.C), D(args.D), z(args.z),
        delta_bias(args.delta_bias), initial_state(args.initial_state), delta_softplus(args.delta_softplus),
        batch(args.u.shape[0]), length(args.u.shape[1]), d_inner(args.u.shape[2]), d_state(args.A.shape[1]) {}

  /// dt before the softplus (its derivative needs it) at (b, t, e).
  T raw_dt(std::int64_t b, std::int64_t t, std::int64_t e) const {
    return delta(b, t, e) + (delta_bias.present() ? delta_bias(e) : T(0));
  }
  T dt(std::int64_t b, std::int64_t t, std::int64_t e) const {
    const T raw = raw_dt(b, t, e);
    return delta_softplus ? softplus(raw) : raw;
  }
  /// The gate silu(z) at (b, t, e), 1 without z.
  T gate(std::int64_t b, std::int64_t t, std::int64_t e) const {
    if (!z.present()) return T(1);
    const T v = z(b, t, e);
    return v * sigmoid(v);
  }
  T h0(std::int64_t b, std::int64_t e, std::int64_t n) const {
    return initial_state.present() ? initial_state(b, e, n) : T(0);
  }
};

/// Runs the recurrence for row b, channel e; calls visit(t, h) after each step with h = h_t.
template <class T, class Visit>
void scan_channel(const ScanInputs<T>& in, std::int64_t b, std::int64_t e, std::vector<T>& h, Visit&& visit) {
  for (std::int64_t n = 0; n < in.d_state; ++n) h[n] = in.h0(b, e, n);
  for (std::int64_t t = 0; t < in.length; ++t) {
    const T dt = in.dt(b, t, e);
    const T u = in.u(b, t, e);
    for (std::int64_t n = 0; n < in.d_state; ++n) {
      h[n] = std::exp(dt * in.A(e, n)) * h[n] + dt * in.B(b, t, n) * u;
    }
    visit(t, h);
  }
}

template <class T>
void scan_forward(const sdk::ScanForwardArgs& args) {
  const ScanInputs<T> in(args);
  const Strided<T> y(args.y), final_state(args.final_state);
  std::vector<T> h(static_cast<std::size_t>(in.d_state));
  for (std::int64_t b = 0; b < in.batch; ++b) {
    for (std::int64_t e = 0; e < in.d_inner; ++e) {
      scan_channel(in, b, e, h, [&](std::int64_t t, const std::vector<T>& state) {
        T out = in.D.present() ? in.D(e) * in.u(b, t, e) : T(0);
        for (std::int64_t n = 0; n < in.d_state; ++n) out += state[n] * in.C(b, t, n);
        y(b, t, e) = out * in.gate(b, t, e);
      });
      if (final_state.present()) {
        for (std::int64_t n = 0; n < in.d_state; ++n) final_state(b, e, n) = h[n];
      }
    }
  }
}

template <class T>
void scan_backward(const sdk::ScanBackwardArgs& args) {
  const ScanInputs<T> in(args.forward);
  const Strided<const T> grad_y(args.grad_y), grad_final_state(args.grad_final_state);
  const Strided<T> grad_u(args.grad_u), grad_delta(args.grad_delta), grad_A(args.grad_A), grad_B(args.grad_B),
      grad_C(args.grad_C), grad_D(args.grad_D), grad_z(args.grad_z), grad_delta_bias(args.grad_delta_bias),
      grad_initial_state(args.grad_initial_state);
  const std::int64_t N = in.d_state;
  std::vector<T> h(static_cast<std::size_t>(N));
  std::vector<T> states(static_cast<std::size_t>(in.length * N));  // h_t for every t of one channel
  std::vector<T> grad_h(static_cast<std::size_t>(N));
  for (std::int64_t b = 0; b < in.batch; ++b) {
    for (std::int64_t e = 0; e < in.d_inner; ++e) {
      scan_channel(in, b, e, h, [&](std::int64_t t, const std::vector<T>& state) {
        for (std::int64_t n = 0; n < N; ++n) states[t * N + n] = state[n];
      });
      for (std::int64_t n = 0; n < N; ++n) grad_h[n] = grad_final_state.present() ? grad_final_state(b, e, n) : T(0);
      for (std::int64_t t = in.length - 1; t >= 0; --t) {
        const T* h_t = &states[t * N];
        const T u = in.u(b, t, e);
        const T raw_dt = in.raw_dt(b, t, e);
        const T dt = in.delta_softplus ? softplus(raw_dt) : raw_dt;
        const T g = grad_y(b, t, e);
        // y_t = y0 * silu(z): the gate's gradient needs y0 = <h_t, C_t> + D u.
        T grad_y0 = g;
        if (in.z.present()) {
          T y0 = in.D.present() ? in.D(e) * u : T(0);
          for (std::int64_t n = 0; n < N; ++n) y0 += h_t[n] * in.C(b, t, n);
          const T zv = in.z(b, t, e);
          const T s = sigmoid(zv);
          grad_y0 = g * zv * s;
          if (grad_z.present()) grad_z(b, t, e) += g * y0 * s * (T(1) + zv * (T(1) - s));
        }
        T grad_u_t = in.D.present() ? grad_y0 * in.D(e) : T(0);
        if (grad_D.present()) grad_D(e) += grad_y0 * u;
        T grad_dt = 0;
        for (std::int64_t n = 0; n < N; ++n) {
          grad_h[n] += grad_y0 * in.C(b, t, n);
          if (grad_C.present()) grad_C(b, t, n) += grad_y0 * h_t[n];
          const T h_prev = t > 0 ? states[(t - 1) * N + n] : in.h0(b, e, n);
          const T decay = std::exp(dt * in.A(e, n));
          grad_dt += grad_h[n] * (in.A(e, n) * decay * h_prev + in.B(b, t, n) * u);
          if (grad_A.present()) grad_A(e, n) += grad_h[n] * dt * decay * h_prev;
          if (grad_B.present()) grad_B(b, t, n) += grad_h[n] * dt * u;
          grad_u_t += grad_h[n] * dt * in.B(b, t, n);
          grad_h[n] *= decay;
        }
        if (grad_u.present()) grad_u(b, t, e) += grad_u_t;
        const T grad_raw_dt = in.delta_softplus && raw_dt <= T(20) ? grad_dt * sigmoid(raw_dt) : grad_dt;
        if (grad_delta.present()) grad_delta(b, t, e) += grad_raw_dt;
        if (grad_delta_bias.present()) grad_delta_bias(e) += grad_raw_dt;
      }
      if (grad_initial_state.present()) {
        for (std::int64_t n = 0; n < N; ++n) grad_initial_state(b, e, n) += grad_h[n];
      }
    }
  }
}

template <class T>
void scan_step(const sdk::ScanStepArgs& args) {
  const Strided<const T> u(args.u), delta(args.delta), A(args.A), B(args.B), C(args.C), D(args.D), z(args.z),
      delta_bias(args.delta_bias);
  const Strided<T> state(args.state), y(args.y);
  const std::int64_t batch = args.u.shape[0], d_inner = args.u.shape[1], d_state = args.A.shape[1];
  for (std::int64_t b = 0; b < batch; ++b) {
    for (std::int64_t e = 0; e < d_inner; ++e) {
      const T raw = delta(b, e) + (delta_bias.present() ? delta_bias(e) : T(0));
      const T dt = args.delta_softplus ? softplus(raw) : raw;
      const T x = u(b, e);
      T out = D.present() ? D(e) * x : T(0);
      for (std::int64_t n = 0; n < d_state; ++n) {
        T& h = state(b, e, n);
        h = std::exp(dt * A(e, n)) * h + dt * B(b, n) * x;
        out += h * C(b, n);
      }
      if (z.present()) out *= z(b, e) * sigmoid(z(b, e));
      y(b, e) = out;
    }
  }
}

}  // namespace mambakit::scan_sequential
