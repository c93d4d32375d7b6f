// Long-sequence stability. The seed ("minimamba") had a "parallel" scan that formed prefix
// products of the decays, P_t = exp(cumsum log a), and computed h_t = P_t * cumsum(b_s / P_s):
// dividing by a prefix product that underflows. It is reimplemented here to show it break on a
// realistic input within a few hundred steps, while scan/chunked (chunk sums of logs and a
// carried state, no division) and scan/fused agree with scan/sequential on the same input;
// and scan/chunked runs 1,048,576 steps without a non-finite value.
//
// Dimensions: B batch, L length, E d_inner, N d_state.

#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "mambakit/plugin_host.hpp"
#include "mambakit/sdk/scan_calls.hpp"
#include "fixtures.hpp"
#include "scan_case.hpp"

using mambakit::test::relative_error;
using mambakit::test::ScanCase;
using mambakit::test::ScanOptions;
namespace sdk = mambakit::sdk;

namespace {

const mambakit::PluginHost& plugin_host() { return mambakit::test::in_tree_plugins(); }

template <class T>
void run_forward(sdk::ScanBackend& scan, ScanCase<T>& problem, int threads) {
  sdk::Context context;
  context.kernels = mambakit::test::fixed_kernels(&scan);
  context.n_threads = threads;
  const auto status = sdk::selective_scan_forward(context, problem.forward_args());
  INFO(status.message);
  REQUIRE(status.ok());
}

/// Mamba's initialisation: A[e, n] = -(n + 1) (S4D-real) and dt = softplus(delta + bias) in
/// [0.01, 0.1], the middle of dt_min = 0.001 .. dt_max = 0.1.
template <class T>
void make_realistic(ScanCase<T>& p) {
  for (std::int64_t e = 0; e < p.d_inner; ++e) {
    for (std::int64_t n = 0; n < p.d_state; ++n) p.A[e * p.d_state + n] = T(-(n + 1));
  }
  const double low = std::log(std::expm1(0.01)), high = std::log(std::expm1(0.1));  // softplus^-1
  for (std::size_t i = 0; i < p.delta.size(); ++i) {
    p.delta[i] = static_cast<T>(low + (high - low) * (0.5 + 0.5 * std::sin(0.37 * static_cast<double>(i))));
  }
  std::fill(p.delta_bias.begin(), p.delta_bias.end(), T(0));
}

/// The seed's "parallel" scan: per (b, e, n), P_t = exp(sum_{s<=t} dt_s A), h_t = P_t *
/// sum_{s<=t} (dt_s B_s u_s / P_s); then y as usual. Returns y (B, L, E).
template <class T>
std::vector<T> seed_parallel_scan(const ScanCase<T>& p) {
  const std::int64_t L = p.length, E = p.d_inner, N = p.d_state;
  std::vector<T> y(p.y.size(), T(0));
  for (std::int64_t b = 0; b < p.batch; ++b) {
    for (std::int64_t e = 0; e < E; ++e) {
      for (std::int64_t n = 0; n < N; ++n) {
        T log_prefix = 0, sum = p.initial_state.empty() ? T(0) : p.initial_state[(b * E + e) * N + n];
        for (std::int64_t t = 0; t < L; ++t) {
          const std::size_t i = static_cast<std::size_t>((b * L + t) * E + e);
          const T raw = p.delta[i] + (p.delta_bias.empty() ? T(0) : p.delta_bias[e]);
          const T dt = p.options.delta_softplus ? (raw > T(20) ? raw : std::log1p(std::exp(raw))) : raw;
          log_prefix += dt * p.A[e * N + n];
          const T prefix = std::exp(log_prefix);
          sum += dt * p.B[(b * L + t) * N + n] * p.u[i] / prefix;
          y[i] += prefix * sum * p.C[(b * L + t) * N + n];
        }
      }
      for (std::int64_t t = 0; t < L; ++t) {
        const std::size_t i = static_cast<std::size_t>((b * L + t) * E + e);
        if (!p.D.empty()) y[i] += p.D[e] * p.u[i];
        if (!p.z.empty()) y[i] *= p.z[i] / (T(1) + std::exp(-p.z[i]));
      }
    }
  }
  return y;
}

/// The first step t at which some y(b, t, e) is not finite, or -1.
template <class T>
std::int64_t first_non_finite_step(const std::vector<T>& y, std::int64_t batch, std::int64_t length,
                                   std::int64_t d_inner) {
  std::int64_t first = -1;
  for (std::int64_t b = 0; b < batch; ++b) {
    for (std::int64_t t = 0; t < length; ++t) {
      for (std::int64_t e = 0; e < d_inner; ++e) {
        if (!std::isfinite(y[static_cast<std::size_t>((b * length + t) * d_inner + e)]) && (first < 0 || t < first)) {
          first = t;
        }
      }
    }
  }
  return first;
}

template <class T>
bool all_finite(const std::vector<T>& v) {
  for (const T x : v) {
    if (!std::isfinite(x)) return false;
  }
  return true;
}

}  // namespace

TEST_CASE("the seed's divide-by-prefix-product scan breaks where scan/chunked and scan/fused hold",
          "[scan][stability]") {
  auto& host = plugin_host();
  auto sequential = mambakit::test::create_scan(host, "sequential");
  const std::int64_t batch = 1, length = 1000, E = 8, N = 16;
  ScanOptions options;
  options.with_initial_state = false;
  ScanCase<float> reference(batch, length, E, N, options, 4242u);
  make_realistic(reference);
  run_forward(*sequential, reference, 1);
  REQUIRE(all_finite(reference.y));

  const std::vector<float> seed_y = seed_parallel_scan(reference);
  const std::int64_t broke_at = first_non_finite_step(seed_y, batch, length, E);
  const double seed_error = relative_error(seed_y, reference.y);
  std::printf("seed parallel scan, f32, L=%lld, N=%lld, A=-(n+1), dt in [0.01, 0.1]: first non-finite y at step %lld\n",
              static_cast<long long>(length), static_cast<long long>(N), static_cast<long long>(broke_at));
  // Agrees at first: the scan is correct in exact arithmetic ...
  CHECK(broke_at > 8);
  // ... then the prefix product of the fastest decays underflows, 1/P overflows, and
  // P * cumsum = 0 * inf = NaN, within a few hundred steps.
  CHECK(broke_at >= 0);
  CHECK(broke_at < 400);
  CHECK_FALSE(seed_error <= 1e-5);

  // The same in double precision only moves the breakdown out (exp(-745) instead of
  // exp(-104)); over 2,000 steps it still fails.
  ScanCase<double> reference64(batch, 2000, E, N, options, 4243u);
  make_realistic(reference64);
  const std::vector<double> seed_y64 = seed_parallel_scan(reference64);
  const std::int64_t broke_at64 = first_non_finite_step(seed_y64, batch, 2000, E);
  std::printf("seed parallel scan, f64, L=2000: first non-finite y at step %lld\n", static_cast<long long>(broke_at64));
  CHECK(broke_at64 >= 0);

  for (const char* name : {"chunked", "fused"}) {
    auto scan = mambakit::test::create_scan(host, name);
    ScanCase<float> trial = reference;
    trial.fill_outputs(std::numeric_limits<float>::quiet_NaN());
    run_forward(*scan, trial, 2);
    const double error_y = relative_error(trial.y, reference.y);
    const double error_state = relative_error(trial.final_state, reference.final_state);
    std::printf("scan/%s on the same input: error y %.3g, final state %.3g\n", name, error_y, error_state);
    INFO("scan/" << name);
    CHECK(all_finite(trial.y));
    CHECK(error_y <= 1e-5);
    CHECK(error_state <= 1e-5);
  }
}

TEST_CASE("scan/chunked and scan/fused hold at extreme step sizes", "[scan][stability]") {
  // dt from 1e-6 (decay ~1: the state remembers everything) to 50 (decay exp(-800) = 0 within
  // one step), in both precisions, with delta_softplus off so dt is exactly what is given.
  auto& host = plugin_host();
  auto sequential = mambakit::test::create_scan(host, "sequential");
  ScanOptions options;
  options.delta_softplus = false;
  options.with_delta_bias = false;
  auto extreme = [](auto& p) {
    for (std::size_t i = 0; i < p.delta.size(); ++i) {
      p.delta[i] = static_cast<typename std::decay_t<decltype(p.delta)>::value_type>(
          std::pow(10.0, -6.0 + 7.7 * (0.5 + 0.5 * std::sin(1.3 * static_cast<double>(i)))));
    }
  };
  ScanCase<float> reference(2, 5000, 20, 16, options, 77u);
  extreme(reference);
  run_forward(*sequential, reference, 1);
  for (const char* name : {"chunked", "fused"}) {
    ScanCase<float> trial = reference;
    trial.fill_outputs(std::numeric_limits<float>::quiet_NaN());
    run_forward(*mambakit::test::create_scan(host, name), trial, 2);
    INFO("scan/" << name << " f32");
    CHECK(relative_error(trial.y, reference.y) <= 1e-5);
    CHECK(relative_error(trial.final_state, reference.final_state) <= 1e-5);
  }
  ScanCase<double> reference64(2, 5000, 20, 16, options, 78u);
  extreme(reference64);
  run_forward(*sequential, reference64, 1);
  ScanCase<double> trial64 = reference64;
  trial64.fill_outputs(std::numeric_limits<double>::quiet_NaN());
  run_forward(*mambakit::test::create_scan(host, "chunked"), trial64, 2);
  CHECK(relative_error(trial64.y, reference64.y) <= 1e-10);
  CHECK(relative_error(trial64.final_state, reference64.final_state) <= 1e-10);
}

TEST_CASE("scan/chunked stays finite and exact over 1,048,576 steps", "[scan][stability]") {
  auto& host = plugin_host();
  auto sequential = mambakit::test::create_scan(host, "sequential");
  auto chunked = mambakit::test::create_scan(host, "chunked");
  const std::int64_t length = std::int64_t{1} << 20;
  ScanCase<float> reference(1, length, 4, 4, ScanOptions{}, 1u << 20);
  make_realistic(reference);
  const auto start_sequential = std::chrono::steady_clock::now();
  run_forward(*sequential, reference, 1);
  const double sequential_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_sequential).count();
  ScanCase<float> trial = reference;
  trial.fill_outputs(std::numeric_limits<float>::quiet_NaN());
  const auto start_chunked = std::chrono::steady_clock::now();
  run_forward(*chunked, trial, 2);
  const double chunked_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_chunked).count();
  const double error_y = relative_error(trial.y, reference.y);
  const double error_state = relative_error(trial.final_state, reference.final_state);
  std::printf("scan/chunked, f32, L=%lld: error y %.3g, final state %.3g (sequential %.2f s, chunked %.2f s)\n",
              static_cast<long long>(length), error_y, error_state, sequential_s, chunked_s);
  CHECK(all_finite(trial.y));
  CHECK(all_finite(trial.final_state));
  CHECK(error_y <= 1e-5);
  CHECK(error_state <= 1e-5);
}
