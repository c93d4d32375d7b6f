// Every registered scan backend against scan/sequential, the oracle: forward outputs and final
// states over lengths 1 to 65,536, batch 1 and 3, with and without z, D, delta_bias and the
// initial state, delta_softplus on and off; every gradient of the backward; the step (decode)
// path position by position; views with gaps between rows. Backends whose score for a problem
// is 0 (a CUDA backend on a machine without a GPU) or that lack a dtype or path are skipped
// for it. The largest error per backend is printed.
//
// Error measure: relative_error() in scan_case.hpp, |a - e| / max(|e|, 0.1 max |e|) per
// element (why the floor: see there). Tolerances: 1e-5 in f32, 1e-10 in f64; f32 gradients
// also pass within 3 times the oracle's own f32 error (see check_backward()).

#include <catch2/catch.hpp>
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "mambakit/plugin_host.hpp"
#include "mambakit/sdk/scan_calls.hpp"
#include "fixtures.hpp"
#include "scan_case.hpp"
#include "scan_report.hpp"

using mambakit::test::relative_error;
using mambakit::test::ScanCase;
using mambakit::test::Report;
using mambakit::test::ScanOptions;
using mambakit::test::describe;
using mambakit::test::options_from_bits;
namespace sdk = mambakit::sdk;

namespace {

const mambakit::PluginHost& plugin_host() { return mambakit::test::in_tree_plugins(); }

template <class T>
constexpr double tolerance() {
  return sizeof(T) == 8 ? 1e-10 : 1e-5;
}

template <class T>
const char* dtype_label() {
  return sizeof(T) == 8 ? "f64" : "f32";
}

/// A backend under test: every registered scan except the oracle itself.
struct Candidate {
  std::string name;
  mambakit::test::ScanPtr scan;
};

std::vector<Candidate> candidates() {
  std::vector<Candidate> out;
  for (const auto& name : mambakit::test::scan_names(plugin_host())) {
    if (name != "sequential") out.push_back({name, mambakit::test::create_scan(plugin_host(), name)});
  }
  return out;
}

/// Whether `scan` can run this problem here: a positive score, the dtype and the path.
bool can_run(sdk::ScanBackend& scan, sdk::DType dtype, std::int64_t batch, std::int64_t length,
             std::int64_t d_inner, std::int64_t d_state, bool backward, bool step) {
  const sdk::KernelProblem problem =
      sdk::selective_scan_problem(sdk::Device{}, dtype, batch, length, d_inner, d_state, backward, step);
  sdk::ScanCapabilities capabilities;
  scan.capabilities(&capabilities);
  return scan.score(problem) > 0 && (capabilities.dtypes & sdk::dtype_bit(dtype)) != 0 &&
         d_state <= capabilities.max_d_state && (!backward || capabilities.backward) && (!step || capabilities.step);
}

sdk::Context context_for(sdk::ScanBackend& scan, int threads) {
  sdk::Context context;
  context.kernels = mambakit::test::fixed_kernels(&scan);
  context.n_threads = threads;
  return context;
}

template <class T>
void run_forward(sdk::ScanBackend& scan, ScanCase<T>& problem, int threads) {
  const auto status = sdk::selective_scan_forward(context_for(scan, threads), problem.forward_args());
  INFO(status.message);
  REQUIRE(status.ok());
}

template <class T>
void run_backward(sdk::ScanBackend& scan, ScanCase<T>& problem, int threads) {
  const auto status = sdk::selective_scan_backward(context_for(scan, threads), problem.backward_args());
  INFO(status.message);
  REQUIRE(status.ok());
}

/// Runs the oracle, then every candidate that can, on a copy of the same problem; checks y
/// and the final state.
template <class T>
void check_forward(sdk::ScanBackend& oracle, std::vector<Candidate>& backends, std::int64_t batch,
                   std::int64_t length, std::int64_t d_inner, std::int64_t d_state, const ScanOptions& options,
                   std::uint32_t seed, int threads, Report& report) {
  ScanCase<T> reference(batch, length, d_inner, d_state, options, seed);
  run_forward(oracle, reference, 1);
  for (auto& backend : backends) {
    const std::string key = "scan/" + backend.name + " " + dtype_label<T>();
    if (!can_run(*backend.scan, ScanCase<T>::kDType, batch, length, d_inner, d_state, false, false)) {
      report.skip(key + " forward");
      continue;
    }
    ScanCase<T> trial = reference;
    trial.fill_outputs(std::numeric_limits<T>::quiet_NaN());
    run_forward(*backend.scan, trial, threads);
    const double error_y = relative_error(trial.y, reference.y);
    const double error_state = relative_error(trial.final_state, reference.final_state);
    INFO(key << " " << describe(batch, length, d_inner, d_state, options) << " threads=" << threads);
    CHECK(error_y <= tolerance<T>());
    CHECK(error_state <= tolerance<T>());
    report.note(key + " forward y", error_y);
    report.note(key + " forward final_state", error_state);
  }
}

/// The gradients of a problem, by name, for comparison.
template <class T>
std::vector<std::pair<const char*, const std::vector<T>*>> gradients(const ScanCase<T>& p) {
  return {{"grad_u", &p.grad_u},         {"grad_delta", &p.grad_delta}, {"grad_A", &p.grad_A},
          {"grad_B", &p.grad_B},         {"grad_C", &p.grad_C},         {"grad_D", &p.grad_D},
          {"grad_z", &p.grad_z},         {"grad_delta_bias", &p.grad_delta_bias},
          {"grad_initial_state", &p.grad_initial_state}};
}

/// Runs the oracle's backward, then every candidate's that can, on the same problem, and
/// checks every gradient. Gradients that sum over rows and time (grad_A, grad_D,
/// grad_delta_bias) or channels (grad_B, grad_C) accumulate f32 rounding in an order that
/// differs between backends; in f32 a gradient therefore passes when it is within the
/// tolerance of the oracle's, or within 3 times the oracle's own error against the same
/// problem run in f64 (measured here: the oracle alone is up to ~8e-6 off in grad_D at
/// L = 4099). Both numbers are in the report.
template <class T>
void check_backward(sdk::ScanBackend& oracle, std::vector<Candidate>& backends, std::int64_t batch,
                    std::int64_t length, std::int64_t d_inner, std::int64_t d_state, const ScanOptions& options,
                    std::uint32_t seed, int threads, Report& report) {
  ScanCase<T> reference(batch, length, d_inner, d_state, options, seed);
  reference.fill_gradients(T(0.25));  // backward adds to what is there
  ScanCase<double> exact = mambakit::test::converted<double>(reference);
  run_backward(oracle, reference, 1);
  if (sizeof(T) < sizeof(double)) run_backward(oracle, exact, 1);
  const auto expected = gradients(reference);
  const auto truth = gradients(exact);
  for (auto& backend : backends) {
    const std::string key = "scan/" + backend.name + " " + dtype_label<T>();
    if (!can_run(*backend.scan, ScanCase<T>::kDType, batch, length, d_inner, d_state, true, false)) {
      report.skip(key + " backward");
      continue;
    }
    ScanCase<T> trial(batch, length, d_inner, d_state, options, seed);
    trial.fill_gradients(T(0.25));
    run_backward(*backend.scan, trial, threads);
    const auto actual = gradients(trial);
    for (std::size_t i = 0; i < expected.size(); ++i) {
      const double error = relative_error(*actual[i].second, *expected[i].second);
      double allowed = tolerance<T>();
      if (sizeof(T) < sizeof(double)) {
        const double oracle_error = relative_error(*expected[i].second, *truth[i].second);
        allowed = std::max(allowed, 3.0 * oracle_error);
        report.note(std::string("scan/sequential f32 (vs f64) backward ") + expected[i].first, oracle_error);
      }
      INFO(key << " " << expected[i].first << " " << describe(batch, length, d_inner, d_state, options)
               << " threads=" << threads << " allowed=" << allowed);
      CHECK(error <= allowed);
      report.note(key + " backward " + expected[i].first, error);
    }
  }
}

/// A (rows, cols) view of v starting at `offset` with `row_stride` between rows; absent when v
/// is empty.
template <class T>
sdk::TensorView slice(std::vector<T>& v, std::int64_t offset, std::int64_t rows, std::int64_t cols,
                      std::int64_t row_stride) {
  if (v.empty()) return sdk::TensorView{};
  sdk::TensorView view = sdk::make_view(v.data() + offset, ScanCase<T>::kDType, sdk::Device{}, {rows, cols});
  view.strides[0] = row_stride;
  return view;
}

/// Steps through the sequence one token at a time, reading the inputs of step t as strided
/// slices of the (B, L, *) tensors, and checks y_t and the final state against the oracle's
/// forward.
template <class T>
void check_step(sdk::ScanBackend& oracle, std::vector<Candidate>& backends, std::int64_t batch, std::int64_t length,
                std::int64_t d_inner, std::int64_t d_state, const ScanOptions& options, std::uint32_t seed,
                int threads, Report& report) {
  ScanCase<T> p(batch, length, d_inner, d_state, options, seed);
  run_forward(oracle, p, 1);
  const std::int64_t E = d_inner, N = d_state, L = length;
  for (auto& backend : backends) {
    const std::string key = "scan/" + backend.name + " " + dtype_label<T>();
    if (!can_run(*backend.scan, ScanCase<T>::kDType, batch, 1, d_inner, d_state, false, true)) {
      report.skip(key + " step");
      continue;
    }
    std::vector<T> state = p.initial_state;
    if (state.empty()) state.assign(static_cast<std::size_t>(batch * E * N), T(0));
    std::vector<T> y(p.y.size(), std::numeric_limits<T>::quiet_NaN());
    const sdk::Context context = context_for(*backend.scan, threads);
    for (std::int64_t t = 0; t < L; ++t) {
      sdk::ScanStepArgs step;
      step.u = slice(p.u, t * E, batch, E, L * E);
      step.delta = slice(p.delta, t * E, batch, E, L * E);
      step.z = slice(p.z, t * E, batch, E, L * E);
      step.B = slice(p.B, t * N, batch, N, L * N);
      step.C = slice(p.C, t * N, batch, N, L * N);
      step.A = p.view(p.A, {E, N});
      step.D = p.view(p.D, {E});
      step.delta_bias = p.view(p.delta_bias, {E});
      step.delta_softplus = options.delta_softplus;
      step.state = p.view(state, {batch, E, N});
      step.y = slice(y, t * E, batch, E, L * E);
      const auto status = sdk::selective_scan_step(context, step);
      INFO(status.message);
      REQUIRE(status.ok());
    }
    const double error_y = relative_error(y, p.y);
    const double error_state = relative_error(state, p.final_state);
    INFO(key << " step " << describe(batch, length, d_inner, d_state, options));
    CHECK(error_y <= tolerance<T>());
    CHECK(error_state <= tolerance<T>());
    report.note(key + " step y", error_y);
    report.note(key + " step state", error_state);
  }
}

/// A copy of a contiguous tensor in a buffer with gaps (filled with NaN) after every row of
/// each dimension but the last, so that only the view's strides lead to the data.
template <class T>
struct Gapped {
  std::vector<std::int64_t> shape;
  std::vector<std::int64_t> strides;
  std::vector<T> storage;

  Gapped(const std::vector<T>& data, std::initializer_list<std::int64_t> extents) : shape(extents) {
    const std::size_t rank = shape.size();
    strides.assign(rank, 1);
    for (std::size_t d = rank - 1; d-- > 0;) {
      strides[d] = shape[d + 1] * strides[d + 1] + 3 + 2 * static_cast<std::int64_t>(d);
    }
    if (data.empty()) return;
    storage.assign(static_cast<std::size_t>(shape[0] * strides[0]), std::numeric_limits<T>::quiet_NaN());
    for_each_index([&](std::int64_t flat, std::int64_t offset) { storage[offset] = data[flat]; });
  }

  sdk::TensorView view() {
    if (storage.empty()) return sdk::TensorView{};
    sdk::TensorView v = sdk::make_view(storage.data(), ScanCase<T>::kDType, sdk::Device{}, shape.data(),
                                       static_cast<std::int32_t>(shape.size()));
    for (std::size_t d = 0; d < shape.size(); ++d) v.strides[d] = strides[d];
    return v;
  }

  std::vector<T> contiguous() const {
    std::int64_t count = 1;
    for (auto extent : shape) count *= extent;
    std::vector<T> out(storage.empty() ? 0 : static_cast<std::size_t>(count));
    if (!storage.empty()) for_each_index([&](std::int64_t flat, std::int64_t offset) { out[flat] = storage[offset]; });
    return out;
  }

 private:
  template <class F>
  void for_each_index(F&& f) const {
    std::int64_t count = 1;
    for (auto extent : shape) count *= extent;
    for (std::int64_t flat = 0; flat < count; ++flat) {
      std::int64_t rest = flat, offset = 0;
      for (std::size_t d = shape.size(); d-- > 0;) {
        offset += (rest % shape[d]) * strides[d];
        rest /= shape[d];
      }
      f(flat, offset);
    }
  }
};

}  // namespace

TEST_CASE("every scan backend's forward matches scan/sequential", "[scan][conformance]") {
  auto& host = plugin_host();
  auto oracle = mambakit::test::create_scan(host, "sequential");
  auto backends = candidates();
  CHECK_FALSE(backends.empty());
  Report report;
  struct Dims {
    std::int64_t d_inner, d_state;
  };
  // E not a multiple of 16 (a partial channel block), N compiled-in (4, 8, 16) or not (5).
  const Dims dims[] = {{20, 5}, {16, 16}, {37, 4}, {3, 8}, {48, 16}};
  const unsigned all = 31;
  std::uint32_t index = 0;
  for (const std::int64_t length : {1, 2, 3, 7, 64, 1000, 4099}) {
    for (const std::int64_t batch : {1, 3}) {
      std::vector<unsigned> option_sets;
      if (length <= 64) {
        for (unsigned bits = 0; bits <= all; ++bits) option_sets.push_back(bits);
      } else {
        option_sets = {all, 0u, all ^ 1u, all ^ 2u, all ^ 4u, all ^ 8u, all ^ 16u, 16u};
      }
      for (const unsigned bits : option_sets) {
        const Dims d = dims[index % 5];
        const int threads = 1 + static_cast<int>(index % 3);
        check_forward<float>(*oracle, backends, batch, length, d.d_inner, d.d_state, options_from_bits(bits),
                             1000u + index, threads, report);
        ++index;
      }
    }
  }
  for (const std::int64_t batch : {1, 3}) {
    for (const unsigned bits : {all, 0u}) {
      check_forward<float>(*oracle, backends, batch, 65536, 4, 4, options_from_bits(bits), 7000u + bits, 2, report);
    }
  }
  for (const std::int64_t length : {1, 3, 7, 64, 1000, 4099}) {
    for (const unsigned bits : {all, 0u, all ^ 16u, all ^ 2u}) {
      const Dims d = dims[index % 5];
      check_forward<double>(*oracle, backends, length % 2 == 0 ? 1 : 3, length, d.d_inner, d.d_state,
                            options_from_bits(bits), 2000u + index, 2, report);
      ++index;
    }
  }
  report.print("forward");
}

TEST_CASE("every scan backend's backward matches scan/sequential in every gradient", "[scan][conformance]") {
  auto& host = plugin_host();
  auto oracle = mambakit::test::create_scan(host, "sequential");
  auto backends = candidates();
  Report report;
  struct Shape {
    std::int64_t batch, length, d_inner, d_state;
  };
  const Shape shapes[] = {{2, 7, 20, 5}, {1, 1, 3, 8}, {1, 300, 16, 16}, {3, 1000, 37, 4}, {1, 4099, 8, 8}};
  const unsigned all = 31;
  std::uint32_t seed = 300;
  for (const Shape& s : shapes) {
    for (const unsigned bits : {all, 0u, all ^ 16u, all ^ 2u, all ^ 8u}) {
      check_backward<float>(*oracle, backends, s.batch, s.length, s.d_inner, s.d_state, options_from_bits(bits),
                            ++seed, 2, report);
      ++seed;
      check_backward<double>(*oracle, backends, s.batch, s.length, s.d_inner, s.d_state, options_from_bits(bits),
                             seed, 1 + static_cast<int>(seed % 2), report);
    }
  }
  report.print("backward");
}

TEST_CASE("every scan backend's step reproduces scan/sequential's forward, position by position",
          "[scan][conformance]") {
  auto& host = plugin_host();
  auto oracle = mambakit::test::create_scan(host, "sequential");
  auto backends = candidates();
  Report report;
  const unsigned all = 31;
  std::uint32_t seed = 500;
  for (const unsigned bits : {all, 0u, all ^ 16u, all ^ 8u}) {
    check_step<float>(*oracle, backends, 2, 9, 20, 5, options_from_bits(bits), ++seed, 2, report);
    check_step<float>(*oracle, backends, 3, 64, 16, 16, options_from_bits(bits), ++seed, 1, report);
    check_step<float>(*oracle, backends, 1, 300, 37, 40, options_from_bits(bits), ++seed, 2, report);
    check_step<double>(*oracle, backends, 2, 33, 20, 5, options_from_bits(bits), ++seed, 2, report);
  }
  // Large enough (B * E * N >= 65,536) for the step to run on several threads.
  check_step<float>(*oracle, backends, 2, 5, 2050, 16, ScanOptions{}, ++seed, 2, report);
  check_step<double>(*oracle, backends, 3, 4, 1400, 16, ScanOptions{}, ++seed, 2, report);
  report.print("step");
}

TEST_CASE("every scan backend honours outer strides of every view", "[scan][conformance]") {
  auto& host = plugin_host();
  auto oracle = mambakit::test::create_scan(host, "sequential");
  auto backends = candidates();
  Report report;
  const std::int64_t batch = 2, length = 70, E = 21, N = 4;
  ScanCase<float> reference(batch, length, E, N, ScanOptions{}, 900u);
  run_forward(*oracle, reference, 1);
  ScanCase<float> reference_grads = reference;
  run_backward(*oracle, reference_grads, 1);
  for (auto& backend : backends) {
    if (!can_run(*backend.scan, sdk::DType::kF32, batch, length, E, N, true, false)) continue;
    const std::string key = "scan/" + backend.name + " f32";
    ScanCase<float> p = reference;
    Gapped<float> u(p.u, {batch, length, E}), delta(p.delta, {batch, length, E}), A(p.A, {E, N}),
        B(p.B, {batch, length, N}), C(p.C, {batch, length, N}), z(p.z, {batch, length, E}),
        h0(p.initial_state, {batch, E, N}), y(std::vector<float>(p.y.size(), 0.0f), {batch, length, E}),
        h_end(std::vector<float>(p.final_state.size(), 0.0f), {batch, E, N});
    sdk::ScanForwardArgs forward = p.forward_args();
    forward.u = u.view();
    forward.delta = delta.view();
    forward.A = A.view();
    forward.B = B.view();
    forward.C = C.view();
    forward.z = z.view();
    forward.initial_state = h0.view();
    forward.y = y.view();
    forward.final_state = h_end.view();
    const auto status = sdk::selective_scan_forward(context_for(*backend.scan, 2), forward);
    INFO(key << ": " << status.message);
    REQUIRE(status.ok());
    const double error_y = relative_error(y.contiguous(), reference.y);
    const double error_state = relative_error(h_end.contiguous(), reference.final_state);
    CHECK(error_y <= 1e-5);
    CHECK(error_state <= 1e-5);
    report.note(key + " strided forward y", error_y);
    report.note(key + " strided forward final_state", error_state);

    Gapped<float> grad_y(p.grad_y, {batch, length, E}), grad_h_end(p.grad_final_state, {batch, E, N}),
        grad_u(p.grad_u, {batch, length, E}), grad_delta(p.grad_delta, {batch, length, E}),
        grad_A(p.grad_A, {E, N}), grad_B(p.grad_B, {batch, length, N}), grad_C(p.grad_C, {batch, length, N}),
        grad_z(p.grad_z, {batch, length, E}), grad_h0(p.grad_initial_state, {batch, E, N});
    sdk::ScanBackwardArgs backward = p.backward_args();
    backward.forward = forward;
    backward.grad_y = grad_y.view();
    backward.grad_final_state = grad_h_end.view();
    backward.grad_u = grad_u.view();
    backward.grad_delta = grad_delta.view();
    backward.grad_A = grad_A.view();
    backward.grad_B = grad_B.view();
    backward.grad_C = grad_C.view();
    backward.grad_z = grad_z.view();
    backward.grad_initial_state = grad_h0.view();
    const auto back_status = sdk::selective_scan_backward(context_for(*backend.scan, 2), backward);
    INFO(back_status.message);
    REQUIRE(back_status.ok());
    const std::pair<const char*, double> errors[] = {
        {"grad_u", relative_error(grad_u.contiguous(), reference_grads.grad_u)},
        {"grad_delta", relative_error(grad_delta.contiguous(), reference_grads.grad_delta)},
        {"grad_A", relative_error(grad_A.contiguous(), reference_grads.grad_A)},
        {"grad_B", relative_error(grad_B.contiguous(), reference_grads.grad_B)},
        {"grad_C", relative_error(grad_C.contiguous(), reference_grads.grad_C)},
        {"grad_z", relative_error(grad_z.contiguous(), reference_grads.grad_z)},
        {"grad_D", relative_error(p.grad_D, reference_grads.grad_D)},
        {"grad_delta_bias", relative_error(p.grad_delta_bias, reference_grads.grad_delta_bias)},
        {"grad_initial_state", relative_error(grad_h0.contiguous(), reference_grads.grad_initial_state)}};
    for (const auto& [name, error] : errors) {
      INFO(key << " strided backward " << name);
      CHECK(error <= 1e-5);
      report.note(key + " strided backward " + name, error);
    }
  }
  report.print("strided views");
}

TEST_CASE("scan/chunked matches scan/sequential at every chunk length, including 1 and ragged tails",
          "[scan][conformance][chunked]") {
  auto& host = plugin_host();
  auto oracle = mambakit::test::create_scan(host, "sequential");
  Report report;
  std::uint32_t seed = 800;
  for (const std::int64_t chunk : {1, 3, 16, 100}) {
    std::vector<Candidate> chunked;
    chunked.push_back({"chunked", mambakit::test::create_scan(host, "chunked", "{\"chunk_length\": " + std::to_string(chunk) + "}")});
    for (const std::int64_t length : {1, 2, 7, 64, 301}) {
      check_forward<float>(*oracle, chunked, 2, length, 20, 5, ScanOptions{}, ++seed, 2, report);
      check_forward<double>(*oracle, chunked, 1, length, 16, 16, options_from_bits(7u), ++seed, 2, report);
      check_backward<float>(*oracle, chunked, 2, length, 20, 5, ScanOptions{}, ++seed, 2, report);
      check_backward<double>(*oracle, chunked, 1, length, 16, 16, options_from_bits(7u), ++seed, 3, report);
    }
  }
  report.print("scan/chunked at chunk lengths 1, 3, 16, 100");
}

TEST_CASE("scan/chunked rejects a bad chunk_length in its config", "[scan][chunked]") {
  CHECK_THROWS_WITH(mambakit::test::create_scan(plugin_host(), "chunked", "{\"chunk_length\": 0}"),
                    Catch::Contains("chunk_length") && Catch::Contains("positive integer"));
  CHECK_THROWS_WITH(mambakit::test::create_scan(plugin_host(), "chunked", "{\"chunk_length\": \"big\"}"),
                    Catch::Contains("positive integer"));
}
