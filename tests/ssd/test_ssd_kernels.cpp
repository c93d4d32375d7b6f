// The SSD kernels (kind "ssd", Mamba-2's scan) against the float64 PyTorch reference
// (tests/data/ssd/*.safetensors, tools/make_mamba2_fixtures.py): forward, every gradient,
// steps == forward, thread-count independence, and the argument checks of ssd_calls.hpp.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "fixtures.hpp"
#include "mambakit/plugin_host.hpp"
#include "mambakit/safetensors.hpp"
#include "mambakit/sdk/ssd_calls.hpp"
#include "test_workspace.hpp"

namespace {

namespace sdk = mambakit::sdk;
using mambakit::KernelPtr;
using mambakit::SafetensorsFile;

KernelPtr create_ssd(const std::string& name) {
  return mambakit::test::in_tree_plugins().create_kernel(sdk::kSsdKind, name, "{}");
}

std::vector<std::string> ssd_names() { return mambakit::test::in_tree_plugins().kernel_names(sdk::kSsdKind); }

/// An SSD problem with its own f32 buffers and contiguous views; x, B and C are slices of one
/// (B, L, H*P + 2*G*N) buffer, as a mixer passes them.
struct SsdProblem {
  std::int64_t batch, length, heads, head_dim, groups, d_state;
  std::vector<float> xbc, dt, A, D, initial, y, final_state;
  std::vector<float> grad_y, grad_final, grad_xbc, grad_dt, grad_A, grad_D, grad_initial;

  SsdProblem(std::int64_t b, std::int64_t l, std::int64_t h, std::int64_t p, std::int64_t g, std::int64_t n)
      : batch(b), length(l), heads(h), head_dim(p), groups(g), d_state(n) {
    xbc.assign(static_cast<std::size_t>(b * l * width()), 0.0f);
    dt.assign(static_cast<std::size_t>(b * l * h), 0.0f);
    A.assign(static_cast<std::size_t>(h), 0.0f);
    D.assign(A.size(), 0.0f);
    initial.assign(static_cast<std::size_t>(b * h * p * n), 0.0f);
    y.assign(static_cast<std::size_t>(b * l * h * p), 0.0f);
    final_state.assign(initial.size(), 0.0f);
    grad_y = y;
    grad_final = initial;
    grad_xbc = xbc;
    grad_dt = dt;
    grad_A = A;
    grad_D = D;
    grad_initial = initial;
  }
  [[nodiscard]] std::int64_t width() const { return heads * head_dim + 2 * groups * d_state; }

  sdk::TensorView slice(std::vector<float>& base, std::int64_t offset, std::int64_t a, std::int64_t b) {
    sdk::TensorView view = sdk::make_view(base.data() + offset, {batch, length, a, b});
    view.strides[1] = width();
    view.strides[0] = length * width();
    return view;
  }
  sdk::SsdForwardArgs forward_args(bool with_d, bool with_initial) {
    sdk::SsdForwardArgs args;
    args.x = slice(xbc, 0, heads, head_dim);
    args.B = slice(xbc, heads * head_dim, groups, d_state);
    args.C = slice(xbc, heads * head_dim + groups * d_state, groups, d_state);
    args.dt = sdk::make_view(dt.data(), {batch, length, heads});
    args.A = sdk::make_view(A.data(), {heads});
    if (with_d) args.D = sdk::make_view(D.data(), {heads});
    if (with_initial) args.initial_state = sdk::make_view(initial.data(), {batch, heads, head_dim, d_state});
    args.final_state = sdk::make_view(final_state.data(), {batch, heads, head_dim, d_state});
    args.y = sdk::make_view(y.data(), {batch, length, heads, head_dim});
    return args;
  }
  sdk::SsdBackwardArgs backward_args(bool with_d, bool with_initial) {
    sdk::SsdBackwardArgs args;
    args.forward = forward_args(with_d, with_initial);
    args.grad_y = sdk::make_view(grad_y.data(), {batch, length, heads, head_dim});
    args.grad_final_state = sdk::make_view(grad_final.data(), {batch, heads, head_dim, d_state});
    args.grad_x = slice(grad_xbc, 0, heads, head_dim);
    args.grad_B = slice(grad_xbc, heads * head_dim, groups, d_state);
    args.grad_C = slice(grad_xbc, heads * head_dim + groups * d_state, groups, d_state);
    args.grad_dt = sdk::make_view(grad_dt.data(), {batch, length, heads});
    args.grad_A = sdk::make_view(grad_A.data(), {heads});
    if (with_d) args.grad_D = sdk::make_view(grad_D.data(), {heads});
    if (with_initial) args.grad_initial_state = sdk::make_view(grad_initial.data(), {batch, heads, head_dim, d_state});
    return args;
  }
  /// Copies a (B, L, a, b) fixture tensor into the columns [offset, offset + a*b) of `base`.
  void scatter(std::vector<float>& base, const std::vector<float>& values, std::int64_t offset, std::int64_t row) {
    for (std::int64_t m = 0; m < batch * length; ++m) {
      std::copy_n(values.begin() + m * row, row, base.begin() + m * width() + offset);
    }
  }
  [[nodiscard]] std::vector<float> gather(const std::vector<float>& base, std::int64_t offset, std::int64_t row) const {
    std::vector<float> out;
    for (std::int64_t m = 0; m < batch * length; ++m) {
      out.insert(out.end(), base.begin() + m * width() + offset, base.begin() + m * width() + offset + row);
    }
    return out;
  }
};

/// Largest |a - b| relative to the largest |b| (at least 1e-3, so that near-zero gradients
/// are compared absolutely).
double relative_error(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double worst = 0.0, scale = 1e-3;
  for (float v : b) scale = std::max(scale, static_cast<double>(std::abs(v)));
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double difference = std::abs(static_cast<double>(a[i]) - b[i]);
    worst = std::isnan(difference) ? INFINITY : std::max(worst, difference);
  }
  return worst / scale;
}

std::int64_t meta(const SafetensorsFile& file, const char* key) { return std::stoll(file.metadata().at(key)); }

}  // namespace

TEST_CASE("every SSD kernel matches the reference SSD fixtures, forward and every gradient") {
  const auto dir = mambakit::test::data_dir() / "ssd";
  for (const auto& name : ssd_names()) {
    for (const char* case_name : {"full", "bare", "long"}) {
      const auto file = SafetensorsFile::open(dir / (std::string(case_name) + ".safetensors"));
      SsdProblem problem(meta(file, "B"), meta(file, "L"), meta(file, "H"), meta(file, "P"), meta(file, "G"),
                         meta(file, "N"));
      const bool with_d = file.metadata().at("has_D") == "1";
      const bool with_initial = file.metadata().at("has_initial_state") == "1";
      const std::int64_t hp = problem.heads * problem.head_dim, gn = problem.groups * problem.d_state;
      problem.scatter(problem.xbc, file.read_f32("x"), 0, hp);
      problem.scatter(problem.xbc, file.read_f32("B"), hp, gn);
      problem.scatter(problem.xbc, file.read_f32("C"), hp + gn, gn);
      problem.dt = file.read_f32("dt");
      problem.A = file.read_f32("A");
      if (with_d) problem.D = file.read_f32("D");
      if (with_initial) problem.initial = file.read_f32("initial_state");
      problem.grad_y = file.read_f32("grad_y");
      problem.grad_final = file.read_f32("grad_final_state");

      auto kernel = create_ssd(name);
      mambakit::test::TestWorkspace workspace;
      const sdk::Context context = mambakit::test::kernel_context(*kernel, workspace, 2);
      INFO("ssd/" << name << " on " << case_name);
      REQUIRE(sdk::ssd_forward(context, problem.forward_args(with_d, with_initial), true).ok());
      CHECK(relative_error(problem.y, file.read_f32("y")) < 2e-5);
      CHECK(relative_error(problem.final_state, file.read_f32("final_state")) < 2e-5);

      const sdk::Status status = sdk::ssd_backward(context, problem.backward_args(with_d, with_initial));
      INFO(status.message);
      REQUIRE(status.ok());
      CHECK(workspace.live() == 0);
      CHECK(relative_error(problem.gather(problem.grad_xbc, 0, hp), file.read_f32("grad_x")) < 2e-5);
      CHECK(relative_error(problem.gather(problem.grad_xbc, hp, gn), file.read_f32("grad_B")) < 2e-5);
      CHECK(relative_error(problem.gather(problem.grad_xbc, hp + gn, gn), file.read_f32("grad_C")) < 2e-5);
      CHECK(relative_error(problem.grad_dt, file.read_f32("grad_dt")) < 2e-5);
      CHECK(relative_error(problem.grad_A, file.read_f32("grad_A")) < 2e-5);
      if (with_d) CHECK(relative_error(problem.grad_D, file.read_f32("grad_D")) < 2e-5);
      if (with_initial) CHECK(relative_error(problem.grad_initial, file.read_f32("grad_initial_state")) < 2e-5);
    }
  }
}

namespace {

/// A random problem with realistic decays (dt in [1e-3, 1e-1], A in [-16, -1]).
SsdProblem random_problem(std::int64_t b, std::int64_t l, std::int64_t h, std::int64_t p, std::int64_t g,
                          std::int64_t n, unsigned seed) {
  SsdProblem problem(b, l, h, p, g, n);
  std::mt19937 generator(seed);
  std::normal_distribution<float> normal;
  std::uniform_real_distribution<float> unit;
  for (auto* values : {&problem.xbc, &problem.initial, &problem.grad_y, &problem.grad_final}) {
    for (auto& v : *values) v = normal(generator);
  }
  for (auto& v : problem.dt) v = std::exp(std::log(1e-3f) + unit(generator) * std::log(100.0f));
  for (auto& v : problem.A) v = -1.0f - 15.0f * unit(generator);
  for (auto& v : problem.D) v = normal(generator);
  return problem;
}

}  // namespace

TEST_CASE("SSD steps reproduce the forward token by token, for every SSD kernel") {
  for (const auto& name : ssd_names()) {
    SsdProblem problem = random_problem(2, 9, 4, 3, 2, 5, 7);
    auto kernel = create_ssd(name);
    mambakit::test::TestWorkspace workspace;
    const sdk::Context context = mambakit::test::kernel_context(*kernel, workspace, 2);
    REQUIRE(sdk::ssd_forward(context, problem.forward_args(true, true)).ok());
    std::vector<float> state = problem.initial, stepped(problem.y.size());
    std::vector<float> y_t(static_cast<std::size_t>(problem.batch * problem.heads * problem.head_dim));
    std::vector<float> dt_t(static_cast<std::size_t>(problem.batch * problem.heads));
    const std::int64_t w = problem.width(), hp = problem.heads * problem.head_dim;
    const std::int64_t gn = problem.groups * problem.d_state;
    for (std::int64_t t = 0; t < problem.length; ++t) {
      const float* row = problem.xbc.data() + t * w;  // row (0, t); batch rows are L * w apart
      auto rows = [&](const float* data, std::int64_t a, std::int64_t b) {
        sdk::TensorView view = sdk::make_view(const_cast<float*>(data), {problem.batch, a, b});
        view.strides[0] = problem.length * w;
        return view;
      };
      for (std::int64_t b = 0; b < problem.batch; ++b) {
        for (std::int64_t h = 0; h < problem.heads; ++h) {
          dt_t[static_cast<std::size_t>(b * problem.heads + h)] =
              problem.dt[static_cast<std::size_t>((b * problem.length + t) * problem.heads + h)];
        }
      }
      sdk::SsdStepArgs step;
      step.x = rows(row, problem.heads, problem.head_dim);
      step.B = rows(row + hp, problem.groups, problem.d_state);
      step.C = rows(row + hp + gn, problem.groups, problem.d_state);
      step.dt = sdk::make_view(dt_t.data(), {problem.batch, problem.heads});
      step.A = sdk::make_view(problem.A.data(), {problem.heads});
      step.D = sdk::make_view(problem.D.data(), {problem.heads});
      step.state = sdk::make_view(state.data(), {problem.batch, problem.heads, problem.head_dim, problem.d_state});
      step.y = sdk::make_view(y_t.data(), {problem.batch, problem.heads, problem.head_dim});
      REQUIRE(sdk::ssd_step(context, step).ok());
      for (std::int64_t b = 0; b < problem.batch; ++b) {
        std::copy_n(y_t.begin() + b * hp, hp, stepped.begin() + (b * problem.length + t) * hp);
      }
    }
    INFO("ssd/" << name);
    CHECK(relative_error(stepped, problem.y) < 1e-5);
    CHECK(relative_error(state, problem.final_state) < 1e-5);
  }
}

TEST_CASE("the chunked SSD matches the sequential recurrence where its register tiles have tails") {
  // P = 72: one panel of 64 columns and a vector of 8 lanes; N = 20 and chunks of 64, 64 and 22
  // rows: row tiles of 6 with 4 left over; 6 heads in 3 groups; an initial state.
  std::vector<float> y[2], final_state[2];
  const char* names[] = {"sequential", "chunked"};
  for (int k = 0; k < 2; ++k) {
    SsdProblem problem = random_problem(2, 150, 6, 72, 3, 20, 5);
    auto kernel = create_ssd(names[k]);
    mambakit::test::TestWorkspace workspace;
    const sdk::Context context = mambakit::test::kernel_context(*kernel, workspace, 2);
    REQUIRE(sdk::ssd_forward(context, problem.forward_args(true, true)).ok());
    y[k] = problem.y;
    final_state[k] = problem.final_state;
  }
  CHECK(relative_error(y[1], y[0]) < 1e-5);
  CHECK(relative_error(final_state[1], final_state[0]) < 1e-5);
}

TEST_CASE("SSD kernels give the same bits with 1 and 2 threads, forward and backward") {
  for (const auto& name : ssd_names()) {
    auto kernel = create_ssd(name);
    std::vector<std::vector<float>> results[2];
    for (const int threads : {1, 2}) {
      // 150 tokens: two full chunks of 64 and a partial one; 4 heads share 2 groups.
      SsdProblem problem = random_problem(3, 150, 4, 8, 2, 16, 11);
      mambakit::test::TestWorkspace workspace;
      const sdk::Context context = mambakit::test::kernel_context(*kernel, workspace, threads);
      REQUIRE(sdk::ssd_forward(context, problem.forward_args(true, true), true).ok());
      REQUIRE(sdk::ssd_backward(context, problem.backward_args(true, true)).ok());
      results[threads - 1] = {problem.y,       problem.final_state, problem.grad_xbc, problem.grad_dt,
                              problem.grad_A, problem.grad_D,      problem.grad_initial};
    }
    INFO("ssd/" << name);
    for (std::size_t i = 0; i < results[0].size(); ++i) CHECK(results[0][i] == results[1][i]);
  }
}

TEST_CASE("the SSD entry points refuse malformed arguments with a message naming the tensor") {
  auto kernel = create_ssd("sequential");
  mambakit::test::TestWorkspace workspace;
  const sdk::Context context = mambakit::test::kernel_context(*kernel, workspace, 1);
  SsdProblem problem = random_problem(1, 4, 4, 2, 2, 3, 3);
  auto message_of = [&](const sdk::SsdForwardArgs& args) { return std::string(sdk::ssd_forward(context, args).message); };

  sdk::SsdForwardArgs wrong_dt = problem.forward_args(true, false);
  wrong_dt.dt.shape[2] = 3;
  CHECK_THAT(message_of(wrong_dt), Catch::Contains("ssd dt has shape (1, 4, 3)"));

  sdk::SsdForwardArgs wrong_a = problem.forward_args(true, false);
  wrong_a.A.shape[0] = 2;
  CHECK_THAT(message_of(wrong_a), Catch::Contains("ssd A"));

  sdk::SsdForwardArgs three_groups = problem.forward_args(true, false);
  three_groups.B.shape[2] = 3;
  three_groups.B.shape[3] = 2;
  CHECK_THAT(message_of(three_groups), Catch::Contains("G dividing H"));

  sdk::SsdForwardArgs scattered = problem.forward_args(true, false);
  scattered.x.strides[2] = 5;
  CHECK_THAT(message_of(scattered), Catch::Contains("ssd x: its rows of 4 x 2 must be contiguous"));

  sdk::SsdBackwardArgs orphan = problem.backward_args(false, false);
  orphan.grad_D = sdk::make_view(problem.grad_D.data(), {4});
  CHECK_THAT(std::string(sdk::ssd_backward(context, orphan).message),
             Catch::Contains("a gradient was requested for an optional input that is absent"));
}
