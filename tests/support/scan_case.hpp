#pragma once
// A selective-scan problem with its own buffers: random inputs, views in the SDK layout, and
// the gradient buffers of a backward pass. Shared by the scan tests.
//
// Dimensions: B batch, L length, E d_inner, N d_state.

#include <cstdint>
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

}  // namespace mambakit::test
