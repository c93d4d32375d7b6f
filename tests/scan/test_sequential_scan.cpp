// scan/sequential, the oracle, checked against independent sources: finite differences in
// double precision for every gradient, and its own step path against its forward.

#include <catch2/catch.hpp>
#include <cmath>
#include <string>

#include "mambakit/plugin_host.hpp"
#include "mambakit/sdk/scan_calls.hpp"
#include "fixtures.hpp"
#include "scan_case.hpp"

using mambakit::test::ScanCase;
using mambakit::test::ScanOptions;

namespace {

mambakit::test::ScanPtr load_sequential() { return mambakit::test::create_scan(mambakit::test::in_tree_plugins(), "sequential"); }

template <class T>
double loss_after_forward(ScanCase<T>& problem, mambakit::sdk::ScanBackend& scan) {
  mambakit::sdk::Context context;
  context.kernels = mambakit::test::fixed_kernels(&scan);
  REQUIRE(mambakit::sdk::selective_scan_forward(context, problem.forward_args()).ok());
  return problem.weighted_loss();
}

/// Checks `analytic` against central differences of the loss with respect to `input`.
void check_gradient(ScanCase<double>& problem, mambakit::sdk::ScanBackend& scan, std::vector<double>& input,
                    const std::vector<double>& analytic, const std::string& name) {
  INFO("gradient of " << name);
  REQUIRE(analytic.size() == input.size());
  const double step = 1e-6;
  for (std::size_t i = 0; i < input.size(); ++i) {
    const double saved = input[i];
    input[i] = saved + step;
    const double plus = loss_after_forward(problem, scan);
    input[i] = saved - step;
    const double minus = loss_after_forward(problem, scan);
    input[i] = saved;
    const double numeric = (plus - minus) / (2 * step);
    INFO("element " << i);
    CHECK(analytic[i] == Approx(numeric).epsilon(1e-6).margin(1e-7));
  }
}

}  // namespace

TEST_CASE("sequential scan gradients match finite differences in double precision") {
  auto scan = load_sequential();
  for (const bool softplus : {true, false}) {
    ScanOptions options;
    options.delta_softplus = softplus;
    ScanCase<double> problem(2, 5, 3, 4, options, softplus ? 11u : 12u);
    mambakit::sdk::Context context;
    context.kernels = mambakit::test::fixed_kernels(scan.get());
    REQUIRE(mambakit::sdk::selective_scan_backward(context, problem.backward_args()).ok());
    const ScanCase<double> analytic = problem;
    INFO("delta_softplus " << softplus);
    check_gradient(problem, *scan, problem.u, analytic.grad_u, "u");
    check_gradient(problem, *scan, problem.delta, analytic.grad_delta, "delta");
    check_gradient(problem, *scan, problem.A, analytic.grad_A, "A");
    check_gradient(problem, *scan, problem.B, analytic.grad_B, "B");
    check_gradient(problem, *scan, problem.C, analytic.grad_C, "C");
    check_gradient(problem, *scan, problem.D, analytic.grad_D, "D");
    check_gradient(problem, *scan, problem.z, analytic.grad_z, "z");
    check_gradient(problem, *scan, problem.delta_bias, analytic.grad_delta_bias, "delta_bias");
    check_gradient(problem, *scan, problem.initial_state, analytic.grad_initial_state, "initial_state");
  }
}

TEST_CASE("sequential scan backward accumulates into the gradients it is given") {
  auto scan = load_sequential();
  ScanCase<double> problem(1, 4, 2, 3, ScanOptions{}, 5u);
  mambakit::sdk::Context context;
  context.kernels = mambakit::test::fixed_kernels(scan.get());
  REQUIRE(mambakit::sdk::selective_scan_backward(context, problem.backward_args()).ok());
  const auto once = problem.grad_A;
  REQUIRE(mambakit::sdk::selective_scan_backward(context, problem.backward_args()).ok());
  for (std::size_t i = 0; i < once.size(); ++i) CHECK(problem.grad_A[i] == Approx(2 * once[i]));
}

TEST_CASE("sequential scan steps reproduce its forward pass, position by position") {
  auto scan = load_sequential();
  const std::int64_t batch = 2, length = 9, d_inner = 3, d_state = 5;
  ScanCase<float> problem(batch, length, d_inner, d_state, ScanOptions{}, 21u);
  mambakit::sdk::Context context;
  context.kernels = mambakit::test::fixed_kernels(scan.get());
  REQUIRE(mambakit::sdk::selective_scan_forward(context, problem.forward_args()).ok());

  std::vector<float> state = problem.initial_state;
  std::vector<float> u(batch * d_inner), delta(batch * d_inner), z(batch * d_inner), y(batch * d_inner);
  std::vector<float> B(batch * d_state), C(batch * d_state);
  for (std::int64_t t = 0; t < length; ++t) {
    for (std::int64_t b = 0; b < batch; ++b) {
      for (std::int64_t e = 0; e < d_inner; ++e) {
        const std::size_t i = (b * length + t) * d_inner + e;
        u[b * d_inner + e] = problem.u[i];
        delta[b * d_inner + e] = problem.delta[i];
        z[b * d_inner + e] = problem.z[i];
      }
      for (std::int64_t n = 0; n < d_state; ++n) {
        B[b * d_state + n] = problem.B[(b * length + t) * d_state + n];
        C[b * d_state + n] = problem.C[(b * length + t) * d_state + n];
      }
    }
    mambakit::sdk::ScanStepArgs step;
    step.u = mambakit::sdk::make_view(u.data(), {batch, d_inner});
    step.delta = mambakit::sdk::make_view(delta.data(), {batch, d_inner});
    step.A = mambakit::sdk::make_view(problem.A.data(), {d_inner, d_state});
    step.B = mambakit::sdk::make_view(B.data(), {batch, d_state});
    step.C = mambakit::sdk::make_view(C.data(), {batch, d_state});
    step.D = mambakit::sdk::make_view(problem.D.data(), {d_inner});
    step.z = mambakit::sdk::make_view(z.data(), {batch, d_inner});
    step.delta_bias = mambakit::sdk::make_view(problem.delta_bias.data(), {d_inner});
    step.state = mambakit::sdk::make_view(state.data(), {batch, d_inner, d_state});
    step.y = mambakit::sdk::make_view(y.data(), {batch, d_inner});
    REQUIRE(mambakit::sdk::selective_scan_step(context, step).ok());
    for (std::int64_t b = 0; b < batch; ++b) {
      for (std::int64_t e = 0; e < d_inner; ++e) {
        CHECK(y[b * d_inner + e] == Approx(problem.y[(b * length + t) * d_inner + e]).epsilon(1e-6).margin(1e-7));
      }
    }
  }
  for (std::size_t i = 0; i < state.size(); ++i) {
    CHECK(state[i] == Approx(problem.final_state[i]).epsilon(1e-6).margin(1e-7));
  }
}
