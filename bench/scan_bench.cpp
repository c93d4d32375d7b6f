// Selective-scan throughput: times the forward (and, with --backward, the backward) of every
// registered CPU scan backend at the mamba-130m mixer shape (E 1536, N 16; B 1 and 8, L 512
// and 2048) and at a long narrow shape where only time offers parallelism (B 1, L 65536,
// E 16), with 1 and 2 threads; with --step, also one decode step (the first token of each
// row). Prints the median of repeated runs as a table (with the cost per token of one layer
// and of the 24 layers of mamba-130m) and as JSON.
//
//   OMP_PROC_BIND=close OMP_PLACES=cores scan_bench [--budget SECONDS] [--max-runs N]
//       [--backward] [--step] [--shape B,L,E,N]... [--json FILE]
//
// --budget: seconds of repeated runs per row (at least 3 runs, at most --max-runs); --shape
// replaces the default shapes.
//
// Inputs are random with Mamba's ranges: A = -(n + 1), dt = softplus(delta + bias) around
// 0.01..0.1, with D, z and delta_bias present, delta_softplus on.
//
// Dimensions: B batch, L length, E d_inner, N d_state.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "mambakit/plugin_host.hpp"
#include "mambakit/sdk/scan_calls.hpp"

namespace {

namespace sdk = mambakit::sdk;
using Clock = std::chrono::steady_clock;

struct Shape {
  std::int64_t batch, length, d_inner, d_state;
};

/// Inputs, outputs and gradients of one problem, contiguous.
struct Problem {
  Shape shape;
  std::vector<float> u, delta, A, B, C, D, z, delta_bias, y, final_state;
  std::vector<float> step_state;
  std::vector<float> grad_y, grad_u, grad_delta, grad_A, grad_B, grad_C, grad_D, grad_z, grad_delta_bias;

  explicit Problem(Shape s) : shape(s) {
    std::mt19937 rng(12345);
    std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
    const std::int64_t tokens = s.batch * s.length;
    auto fill = [&](std::vector<float>& v, std::int64_t n, float scale, float offset) {
      v.resize(static_cast<std::size_t>(n));
      for (auto& x : v) x = offset + scale * unit(rng);
    };
    fill(u, tokens * s.d_inner, 1.0f, 0.0f);
    fill(delta, tokens * s.d_inner, 1.0f, -3.3f);  // softplus(-4.3 .. -2.3) = 0.013 .. 0.095
    A.resize(static_cast<std::size_t>(s.d_inner * s.d_state));
    for (std::int64_t e = 0; e < s.d_inner; ++e) {
      for (std::int64_t n = 0; n < s.d_state; ++n) A[e * s.d_state + n] = -static_cast<float>(n + 1);
    }
    fill(B, tokens * s.d_state, 1.0f, 0.0f);
    fill(C, tokens * s.d_state, 1.0f, 0.0f);
    fill(D, s.d_inner, 1.0f, 0.0f);
    fill(z, tokens * s.d_inner, 2.0f, 0.0f);
    fill(delta_bias, s.d_inner, 0.1f, 0.0f);
    y.assign(static_cast<std::size_t>(tokens * s.d_inner), 0.0f);
    final_state.assign(static_cast<std::size_t>(s.batch * s.d_inner * s.d_state), 0.0f);
    fill(grad_y, tokens * s.d_inner, 1.0f, 0.0f);
    for (auto* g : {&grad_u, &grad_delta, &grad_z}) g->assign(y.size(), 0.0f);
    grad_A.assign(A.size(), 0.0f);
    grad_B.assign(B.size(), 0.0f);
    grad_C.assign(C.size(), 0.0f);
    grad_D.assign(D.size(), 0.0f);
    grad_delta_bias.assign(D.size(), 0.0f);
  }

  sdk::ScanForwardArgs forward_args() {
    const auto [b, l, e, n] = shape;
    sdk::ScanForwardArgs args;
    args.u = sdk::make_view(u.data(), {b, l, e});
    args.delta = sdk::make_view(delta.data(), {b, l, e});
    args.A = sdk::make_view(A.data(), {e, n});
    args.B = sdk::make_view(B.data(), {b, l, n});
    args.C = sdk::make_view(C.data(), {b, l, n});
    args.D = sdk::make_view(D.data(), {e});
    args.z = sdk::make_view(z.data(), {b, l, e});
    args.delta_bias = sdk::make_view(delta_bias.data(), {e});
    args.delta_softplus = true;
    args.final_state = sdk::make_view(final_state.data(), {b, e, n});
    args.y = sdk::make_view(y.data(), {b, l, e});
    return args;
  }

  /// One decode step on the first token of every row, from a zero state.
  sdk::ScanStepArgs step_args() {
    const auto [b, l, e, n] = shape;
    step_state.assign(static_cast<std::size_t>(b * e * n), 0.0f);
    sdk::ScanStepArgs args;
    auto rows = [&](std::vector<float>& v, std::int64_t cols) {
      sdk::TensorView view = sdk::make_view(v.data(), {b, cols});
      view.strides[0] = l * cols;
      return view;
    };
    args.u = rows(u, e);
    args.delta = rows(delta, e);
    args.A = sdk::make_view(A.data(), {e, n});
    args.B = rows(B, n);
    args.C = rows(C, n);
    args.D = sdk::make_view(D.data(), {e});
    args.z = rows(z, e);
    args.delta_bias = sdk::make_view(delta_bias.data(), {e});
    args.delta_softplus = true;
    args.state = sdk::make_view(step_state.data(), {b, e, n});
    args.y = rows(y, e);
    return args;
  }

  sdk::ScanBackwardArgs backward_args() {
    const auto [b, l, e, n] = shape;
    sdk::ScanBackwardArgs args;
    args.forward = forward_args();
    args.grad_y = sdk::make_view(grad_y.data(), {b, l, e});
    args.grad_u = sdk::make_view(grad_u.data(), {b, l, e});
    args.grad_delta = sdk::make_view(grad_delta.data(), {b, l, e});
    args.grad_A = sdk::make_view(grad_A.data(), {e, n});
    args.grad_B = sdk::make_view(grad_B.data(), {b, l, n});
    args.grad_C = sdk::make_view(grad_C.data(), {b, l, n});
    args.grad_D = sdk::make_view(grad_D.data(), {e});
    args.grad_z = sdk::make_view(grad_z.data(), {b, l, e});
    args.grad_delta_bias = sdk::make_view(grad_delta_bias.data(), {e});
    return args;
  }
};

struct Result {
  std::string backend, pass;
  Shape shape;
  int threads;
  int runs;
  double median_ms, min_ms;
};

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const std::size_t mid = values.size() / 2;
  return values.size() % 2 == 1 ? values[mid] : 0.5 * (values[mid - 1] + values[mid]);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    double budget_s = 2.0;
    int max_runs = 50;
    bool with_backward = false;
    bool with_step = false;
    std::string json_path;
    std::vector<Shape> shapes;
    for (int i = 1; i < argc; ++i) {
      const std::string arg = argv[i];
      if (arg == "--budget" && i + 1 < argc) {
        budget_s = std::atof(argv[++i]);
      } else if (arg == "--max-runs" && i + 1 < argc) {
        max_runs = std::max(1, std::atoi(argv[++i]));
      } else if (arg == "--backward") {
        with_backward = true;
      } else if (arg == "--step") {
        with_step = true;
      } else if (arg == "--shape" && i + 1 < argc) {
        long long b = 0, l = 0, e = 0, n = 0;
        if (std::sscanf(argv[++i], "%lld,%lld,%lld,%lld", &b, &l, &e, &n) != 4 || b < 1 || l < 1 || e < 1 || n < 1) {
          std::fprintf(stderr, "scan_bench: --shape wants B,L,E,N (positive integers), got %s\n", argv[i]);
          return 2;
        }
        shapes.push_back({b, l, e, n});
      } else if (arg == "--json" && i + 1 < argc) {
        json_path = argv[++i];
      } else {
        std::fprintf(stderr,
                     "usage: scan_bench [--budget SECONDS] [--max-runs N] [--backward] [--step] "
                     "[--shape B,L,E,N]... [--json FILE]\n");
        return 2;
      }
    }

    mambakit::PluginHost host;
    host.load_directory(mambakit::PluginHost::default_plugin_dir());
    if (shapes.empty()) {
      shapes = {{1, 512, 1536, 16}, {1, 2048, 1536, 16}, {8, 512, 1536, 16}, {8, 2048, 1536, 16}, {1, 65536, 16, 16}};
    }
    std::vector<Result> results;
    std::printf("%-10s %-8s %2s %2s %6s %5s %3s %5s %10s %10s %12s %14s\n", "backend", "pass", "th", "B", "L", "E",
                "N", "runs", "median ms", "min ms", "us/token", "ms/token x24");
    for (const Shape& shape : shapes) {
      Problem problem(shape);
      for (const auto& name : host.kernel_names(sdk::kSelectiveScanKind)) {
        auto scan = mambakit::kernel_as<sdk::ScanBackend>(host.create_kernel(sdk::kSelectiveScanKind, name));
        const sdk::KernelProblem query = sdk::selective_scan_problem(sdk::Device{}, sdk::DType::kF32, shape.batch,
                                                                     shape.length, shape.d_inner, shape.d_state);
        if (scan->score(query) <= 0) continue;
        for (const int threads : {1, 2}) {
          // scan/sequential is single-threaded: one row is enough.
          if (name == "sequential" && threads > 1) continue;
          sdk::Context context;
          context.n_threads = threads;
          for (const std::string pass : {"forward", "backward", "step"}) {
            if ((pass == "backward" && !with_backward) || (pass == "step" && !with_step)) continue;
            auto run_once = [&] {
              const sdk::ScanForwardArgs forward = problem.forward_args();
              const sdk::ScanBackwardArgs backward = problem.backward_args();
              const sdk::ScanStepArgs step = problem.step_args();
              const auto start = Clock::now();
              const sdk::Status status = pass == "backward" ? sdk::selective_scan_backward(*scan, context, backward)
                                         : pass == "step"   ? sdk::selective_scan_step(*scan, context, step)
                                                            : sdk::selective_scan_forward(*scan, context, forward);
              if (!status.ok()) throw std::runtime_error(name + ": " + status.message);
              return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
            };
            run_once();  // warm-up: page faults, thread pool start
            std::vector<double> times;
            const auto begin = Clock::now();
            while (static_cast<int>(times.size()) < max_runs &&
                   (times.size() < 3 || std::chrono::duration<double>(Clock::now() - begin).count() < budget_s)) {
              times.push_back(run_once());
            }
            Result r{name, pass, shape, threads, static_cast<int>(times.size()), median(times),
                     *std::min_element(times.begin(), times.end())};
            const std::int64_t tokens = shape.batch * (pass == "step" ? 1 : shape.length);
            const double per_token_us = 1000.0 * r.median_ms / static_cast<double>(tokens);
            std::printf("%-10s %-8s %2d %2lld %6lld %5lld %3lld %5d %10.3f %10.3f %12.3f %14.3f\n", name.c_str(),
                        pass.c_str(),
                        threads, static_cast<long long>(shape.batch), static_cast<long long>(shape.length),
                        static_cast<long long>(shape.d_inner), static_cast<long long>(shape.d_state), r.runs,
                        r.median_ms, r.min_ms, per_token_us, per_token_us * 24.0 / 1000.0);
            std::fflush(stdout);
            results.push_back(r);
          }
        }
      }
    }

    std::string json = "[\n";
    for (std::size_t i = 0; i < results.size(); ++i) {
      const Result& r = results[i];
      char line[512];
      std::snprintf(line, sizeof line,
                    "  {\"backend\": \"%s\", \"pass\": \"%s\", \"threads\": %d, \"batch\": %lld, \"length\": %lld, "
                    "\"d_inner\": %lld, \"d_state\": %lld, \"runs\": %d, \"median_ms\": %.4f, \"min_ms\": %.4f, "
                    "\"us_per_token\": %.4f}%s\n",
                    r.backend.c_str(), r.pass.c_str(), r.threads, static_cast<long long>(r.shape.batch),
                    static_cast<long long>(r.shape.length), static_cast<long long>(r.shape.d_inner),
                    static_cast<long long>(r.shape.d_state), r.runs, r.median_ms, r.min_ms,
                    1000.0 * r.median_ms /
                        static_cast<double>(r.shape.batch * (r.pass == "step" ? 1 : r.shape.length)),
                    i + 1 < results.size() ? "," : "");
      json += line;
    }
    json += "]\n";
    if (json_path.empty()) {
      std::printf("%s", json.c_str());
    } else {
      std::ofstream(json_path) << json;
      std::printf("JSON written to %s\n", json_path.c_str());
    }
    return 0;
  } catch (const std::exception& error) {
    std::fprintf(stderr, "scan_bench: %s\n", error.what());
    return 1;
  }
}
