#pragma once
// A selective-scan problem with its own buffers: random inputs, views in the SDK layout, and
// the gradient buffers of a backward pass. Shared by the scan tests.
//
// Dimensions: B batch, L length, E d_inner, N d_state.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "mambakit/sdk/scan_backend.hpp"

namespace mambakit::test {

/// Which optional inputs a case has.
struct ScanOptions {
  bool with_D = true;
  bool with_z = true;
  bool with_delta_bias = true;
  bool with_initial_state = true;
  bool delta_softplus = true;
};

/// Options from the low five bits of `bits`: D, z, delta_bias, initial state, softplus.
inline ScanOptions options_from_bits(unsigned bits) {
  ScanOptions options;
  options.with_D = (bits & 1u) != 0;
  options.with_z = (bits & 2u) != 0;
  options.with_delta_bias = (bits & 4u) != 0;
  options.with_initial_state = (bits & 8u) != 0;
  options.delta_softplus = (bits & 16u) != 0;
  return options;
}

template <class T>
struct ScanCase {
  std::int64_t batch, length, d_inner, d_state;
  ScanOptions options;
  // Inputs.
  std::vector<T> u, delta, A, B, C, D, z, delta_bias, initial_state;
  // Outputs.
  std::vector<T> y, final_state;
  // Backward: upstream gradients in, input gradients out.
  std::vector<T> grad_y, grad_final_state;
  std::vector<T> grad_u, grad_delta, grad_A, grad_B, grad_C, grad_D, grad_z, grad_delta_bias, grad_initial_state;

  ScanCase(std::int64_t batch_, std::int64_t length_, std::int64_t d_inner_, std::int64_t d_state_,
           ScanOptions options_, std::uint32_t seed)
      : batch(batch_), length(length_), d_inner(d_inner_), d_state(d_state_), options(options_) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<double> unit(-1.0, 1.0);
    auto fill = [&](std::vector<T>& v, std::int64_t n, double scale, double offset = 0.0) {
      v.resize(static_cast<std::size_t>(n));
      for (auto& x : v) x = static_cast<T>(offset + scale * unit(rng));
    };
    const std::int64_t tokens = batch * length;
    fill(u, tokens * d_inner, 1.0);
    // Typical Mamba dt before softplus sits around softplus^-1(0.001..0.1) = -7..-2.3.
    fill(delta, tokens * d_inner, 1.5, options.delta_softplus ? -3.0 : 0.0);
    if (!options.delta_softplus) {
      for (auto& v : delta) v = static_cast<T>(0.05 + 0.04 * static_cast<double>(v));
    }
    A.resize(static_cast<std::size_t>(d_inner * d_state));
    for (std::int64_t e = 0; e < d_inner; ++e) {
      for (std::int64_t n = 0; n < d_state; ++n) A[e * d_state + n] = static_cast<T>(-(n + 1) * (1.0 + 0.2 * unit(rng)));
    }
    fill(B, tokens * d_state, 1.0);
    fill(C, tokens * d_state, 1.0);
    if (options.with_D) fill(D, d_inner, 1.0);
    if (options.with_z) fill(z, tokens * d_inner, 2.0);
    if (options.with_delta_bias) fill(delta_bias, d_inner, 1.0, options.delta_softplus ? -1.0 : 0.05);
    if (!options.delta_softplus && options.with_delta_bias) {
      for (auto& v : delta_bias) v = static_cast<T>(0.02 + 0.01 * static_cast<double>(v));
    }
    if (options.with_initial_state) fill(initial_state, batch * d_inner * d_state, 1.0);
    y.assign(static_cast<std::size_t>(tokens * d_inner), T(0));
    final_state.assign(static_cast<std::size_t>(batch * d_inner * d_state), T(0));
    fill(grad_y, tokens * d_inner, 1.0);
    fill(grad_final_state, batch * d_inner * d_state, 1.0);
    zero_gradients();
  }

  /// Sets every output (y, final_state) to `value`, e.g. NaN to catch an output a backend
  /// forgot to write.
  void fill_outputs(T value) {
    std::fill(y.begin(), y.end(), value);
    std::fill(final_state.begin(), final_state.end(), value);
  }

  /// Sets every input gradient to `value`, e.g. non-zero to check the += convention.
  void fill_gradients(T value) {
    for (auto* g : {&grad_u, &grad_delta, &grad_A, &grad_B, &grad_C, &grad_D, &grad_z, &grad_delta_bias,
                    &grad_initial_state}) {
      std::fill(g->begin(), g->end(), value);
    }
  }

  void zero_gradients() {
    auto zero = [](std::vector<T>& v, const std::vector<T>& like) { v.assign(like.size(), T(0)); };
    zero(grad_u, u);
    zero(grad_delta, delta);
    zero(grad_A, A);
    zero(grad_B, B);
    zero(grad_C, C);
    zero(grad_D, D);
    zero(grad_z, z);
    zero(grad_delta_bias, delta_bias);
    zero(grad_initial_state, initial_state);
  }

  static constexpr sdk::DType kDType = sizeof(T) == 8 ? sdk::DType::kF64 : sdk::DType::kF32;

  sdk::TensorView view(std::vector<T>& v, std::initializer_list<std::int64_t> shape) {
    if (v.empty()) return sdk::TensorView{};
    return sdk::make_view(v.data(), kDType, sdk::Device{}, shape);
  }

  sdk::ScanForwardArgs forward_args() {
    sdk::ScanForwardArgs args;
    args.u = view(u, {batch, length, d_inner});
    args.delta = view(delta, {batch, length, d_inner});
    args.A = view(A, {d_inner, d_state});
    args.B = view(B, {batch, length, d_state});
    args.C = view(C, {batch, length, d_state});
    args.D = view(D, {d_inner});
    args.z = view(z, {batch, length, d_inner});
    args.delta_bias = view(delta_bias, {d_inner});
    args.delta_softplus = options.delta_softplus;
    args.initial_state = view(initial_state, {batch, d_inner, d_state});
    args.final_state = view(final_state, {batch, d_inner, d_state});
    args.y = view(y, {batch, length, d_inner});
    return args;
  }

  sdk::ScanBackwardArgs backward_args() {
    sdk::ScanBackwardArgs args;
    args.forward = forward_args();
    args.grad_y = view(grad_y, {batch, length, d_inner});
    args.grad_final_state = view(grad_final_state, {batch, d_inner, d_state});
    args.grad_u = view(grad_u, {batch, length, d_inner});
    args.grad_delta = view(grad_delta, {batch, length, d_inner});
    args.grad_A = view(grad_A, {d_inner, d_state});
    args.grad_B = view(grad_B, {batch, length, d_state});
    args.grad_C = view(grad_C, {batch, length, d_state});
    args.grad_D = view(grad_D, {d_inner});
    args.grad_z = view(grad_z, {batch, length, d_inner});
    args.grad_delta_bias = view(grad_delta_bias, {d_inner});
    args.grad_initial_state = view(grad_initial_state, {batch, d_inner, d_state});
    return args;
  }

  /// sum(y * grad_y) + sum(final_state * grad_final_state): the loss whose gradient
  /// backward() computes with these upstream gradients.
  double weighted_loss() const {
    double loss = 0.0;
    for (std::size_t i = 0; i < y.size(); ++i) loss += static_cast<double>(y[i]) * grad_y[i];
    for (std::size_t i = 0; i < final_state.size(); ++i) loss += static_cast<double>(final_state[i]) * grad_final_state[i];
    return loss;
  }
};

/// Values smaller than this fraction of a tensor's largest magnitude are judged against that
/// fraction of the largest magnitude instead of their own size (see relative_error()).
inline constexpr double kRelativeFloor = 0.1;

/// The error of `actual` against `expected` as a number comparable to a relative tolerance:
///   max_i |a_i - e_i| / max(|e_i|, floor * max_j |e_j|),
/// so `relative_error(a, e) <= rtol` means |a_i - e_i| <= rtol * |e_i| for every element of at
/// least `floor` times the largest magnitude, and |a_i - e_i| <= rtol * floor * max|e| below.
/// Why a floor, and why 0.1: an output y_t = <h_t, C_t> + D u_t near zero is a cancellation
/// of terms the size of the tensor's large values, so its f32 rounding error is a fraction of
/// those terms, not of the small result. Measured on scan/sequential itself (f32 against the
/// same inputs run in f64, L = 5000, N = 16): its own error is 2.5e-5 with a floor of 0.001,
/// 5e-6 with 0.01 and 1.2e-6 with 0.1; two correct f32 scans that round differently can
/// differ by the sum of such errors, so agreement within 1e-5 is a meaningful requirement only
/// with the 0.1 floor. A logic error (a wrong carry, gate, step or index) gives errors of order
/// 1 under any floor. A non-finite actual value, or a size mismatch, gives +inf.
template <class A, class E>
double relative_error(const std::vector<A>& actual, const std::vector<E>& expected, double floor = kRelativeFloor) {
  if (actual.size() != expected.size()) return std::numeric_limits<double>::infinity();
  double largest = 0.0;
  for (const E e : expected) largest = std::max(largest, std::fabs(static_cast<double>(e)));
  const double denominator_floor = std::max(floor * largest, std::numeric_limits<double>::min());
  double worst = 0.0;
  for (std::size_t i = 0; i < actual.size(); ++i) {
    const double a = static_cast<double>(actual[i]);
    const double e = static_cast<double>(expected[i]);
    if (!std::isfinite(a)) return std::numeric_limits<double>::infinity();
    worst = std::max(worst, std::fabs(a - e) / std::max(std::fabs(e), denominator_floor));
  }
  return worst;
}

/// A problem of element type To with the same inputs and upstream gradients as `from`,
/// converted element by element (e.g. the f32 inputs in f64, to measure f32 rounding error).
template <class To, class From>
ScanCase<To> converted(const ScanCase<From>& from) {
  ScanCase<To> to(from.batch, from.length, from.d_inner, from.d_state, from.options, 0u);
  auto copy = [](std::vector<To>& dst, const std::vector<From>& src) { dst.assign(src.begin(), src.end()); };
  copy(to.u, from.u);
  copy(to.delta, from.delta);
  copy(to.A, from.A);
  copy(to.B, from.B);
  copy(to.C, from.C);
  copy(to.D, from.D);
  copy(to.z, from.z);
  copy(to.delta_bias, from.delta_bias);
  copy(to.initial_state, from.initial_state);
  copy(to.grad_y, from.grad_y);
  copy(to.grad_final_state, from.grad_final_state);
  for (auto [dst, src] : {std::pair{&to.grad_u, &from.grad_u}, {&to.grad_delta, &from.grad_delta},
                          {&to.grad_A, &from.grad_A}, {&to.grad_B, &from.grad_B}, {&to.grad_C, &from.grad_C},
                          {&to.grad_D, &from.grad_D}, {&to.grad_z, &from.grad_z},
                          {&to.grad_delta_bias, &from.grad_delta_bias},
                          {&to.grad_initial_state, &from.grad_initial_state}}) {
    copy(*dst, *src);
  }
  return to;
}

}  // namespace mambakit::test
