// SSD (Mamba-2 scan) throughput: times the forward and, with --backward, the backward of every
// registered SSD kernel at the mamba2-130m mixer shape (H 24 heads of P 64, G 1, N 128), B 1
// x L 2048 and B 8 x L 512, with 1 and 2 threads. Prints the median of repeated runs, with the
// cost per token of one layer and of mamba2-130m's 24.
//
//   OMP_PROC_BIND=close OMP_PLACES=cores ssd_bench [--runs N] [--backward] [--kernel NAME]
//
// Inputs are random with Mamba-2's ranges: dt log-uniform in [1e-3, 1e-1], A in [-16, -1].
//
// Dimensions: B batch, L length, H heads, P head_dim, G groups, N d_state.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "mambakit/plugin_host.hpp"
#include "mambakit/sdk/ssd_calls.hpp"

namespace {

namespace sdk = mambakit::sdk;
using Clock = std::chrono::steady_clock;

/// Scratch memory from the heap that keeps freed blocks for later requests of the same size,
/// as a Model's workspace does (so the timed runs see no fresh pages).
class CachingWorkspace final : public sdk::WorkspaceAllocator {
 public:
  ~CachingWorkspace() {
    for (const auto& block : blocks_) std::free(block.memory);
  }
  void* allocate(std::size_t bytes, std::size_t alignment) noexcept override {
    const std::size_t rounded = (bytes + 4095) / 4096 * 4096;
    for (auto& block : blocks_) {
      if (!block.in_use && block.bytes == rounded) {
        block.in_use = true;
        return block.memory;
      }
    }
    void* memory = std::aligned_alloc(std::max<std::size_t>(alignment, 64), rounded);
    if (memory != nullptr) blocks_.push_back({memory, rounded, true});
    return memory;
  }
  void deallocate(void* memory) noexcept override {
    for (auto& block : blocks_) {
      if (block.memory == memory) block.in_use = false;
    }
  }

 private:
  struct Block {
    void* memory;
    std::size_t bytes;
    bool in_use;
  };
  std::vector<Block> blocks_;
};

/// Hands out one kernel for every request.
class OneKernel final : public sdk::KernelProvider {
 public:
  explicit OneKernel(sdk::Kernel* kernel) : kernel_(kernel) {}
  sdk::Status find(const char*, const sdk::KernelProblem&, sdk::Kernel** out) noexcept override {
    *out = kernel_;
    return sdk::Status::success();
  }

 private:
  sdk::Kernel* kernel_;
};

struct Problem {
  std::int64_t B, L, H = 24, P = 64, G = 1, N = 128;
  std::vector<float> x, dt, A, Bm, C, D, y, final_state, grad_y, grad_x, grad_dt, grad_A, grad_B, grad_C, grad_D;

  Problem(std::int64_t batch, std::int64_t length) : B(batch), L(length) {
    std::mt19937 rng(1);
    std::normal_distribution<float> normal;
    std::uniform_real_distribution<float> unit;
    auto fill = [&](std::vector<float>& v, std::int64_t n) {
      v.resize(static_cast<std::size_t>(n));
      for (auto& value : v) value = normal(rng);
    };
    fill(x, B * L * H * P);
    fill(Bm, B * L * G * N);
    fill(C, B * L * G * N);
    fill(D, H);
    fill(grad_y, B * L * H * P);
    dt.resize(static_cast<std::size_t>(B * L * H));
    for (auto& value : dt) value = std::exp(std::log(1e-3f) + unit(rng) * std::log(100.0f));
    A.resize(static_cast<std::size_t>(H));
    for (auto& value : A) value = -1.0f - 15.0f * unit(rng);
    y.assign(x.size(), 0.0f);
    final_state.assign(static_cast<std::size_t>(B * H * P * N), 0.0f);
    grad_x.assign(x.size(), 0.0f);
    grad_dt.assign(dt.size(), 0.0f);
    grad_A.assign(A.size(), 0.0f);
    grad_B.assign(Bm.size(), 0.0f);
    grad_C.assign(C.size(), 0.0f);
    grad_D.assign(D.size(), 0.0f);
  }
  sdk::SsdForwardArgs forward() {
    sdk::SsdForwardArgs args;
    args.x = sdk::make_view(x.data(), {B, L, H, P});
    args.dt = sdk::make_view(dt.data(), {B, L, H});
    args.A = sdk::make_view(A.data(), {H});
    args.B = sdk::make_view(Bm.data(), {B, L, G, N});
    args.C = sdk::make_view(C.data(), {B, L, G, N});
    args.D = sdk::make_view(D.data(), {H});
    args.final_state = sdk::make_view(final_state.data(), {B, H, P, N});
    args.y = sdk::make_view(y.data(), {B, L, H, P});
    return args;
  }
  sdk::SsdBackwardArgs backward() {
    sdk::SsdBackwardArgs args;
    args.forward = forward();
    args.grad_y = sdk::make_view(grad_y.data(), {B, L, H, P});
    args.grad_x = sdk::make_view(grad_x.data(), {B, L, H, P});
    args.grad_dt = sdk::make_view(grad_dt.data(), {B, L, H});
    args.grad_A = sdk::make_view(grad_A.data(), {H});
    args.grad_B = sdk::make_view(grad_B.data(), {B, L, G, N});
    args.grad_C = sdk::make_view(grad_C.data(), {B, L, G, N});
    args.grad_D = sdk::make_view(grad_D.data(), {H});
    return args;
  }
};

template <class Run>
double median_seconds(int runs, Run&& run) {
  run();  // warm-up
  std::vector<double> seconds;
  for (int i = 0; i < runs; ++i) {
    const auto start = Clock::now();
    run();
    seconds.push_back(std::chrono::duration<double>(Clock::now() - start).count());
  }
  std::sort(seconds.begin(), seconds.end());
  return seconds[seconds.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int runs = 5;
  bool with_backward = false;
  std::string only;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--runs") == 0 && i + 1 < argc) {
      runs = std::max(1, std::atoi(argv[++i]));
    } else if (std::strcmp(argv[i], "--backward") == 0) {
      with_backward = true;
    } else if (std::strcmp(argv[i], "--kernel") == 0 && i + 1 < argc) {
      only = argv[++i];
    } else {
      std::fprintf(stderr, "usage: ssd_bench [--runs N] [--backward] [--kernel NAME]\n");
      return 2;
    }
  }
  mambakit::PluginHost host;
  host.load_directory(mambakit::PluginHost::default_plugin_dir());
  std::printf("%-12s %-9s %5s %6s %7s %8s %12s %16s\n", "kernel", "pass", "batch", "length", "threads", "ms/run",
              "us/token", "ms/token x 24");
  for (const auto& name : host.kernel_names(sdk::kSsdKind)) {
    if (!only.empty() && name != only) continue;
    auto kernel = host.create_kernel(sdk::kSsdKind, name);
    OneKernel provider(kernel.get());
    for (const auto& [batch, length] : {std::pair<std::int64_t, std::int64_t>{1, 2048}, {8, 512}}) {
      Problem problem(batch, length);
      for (const int threads : {1, 2}) {
        CachingWorkspace workspace;
        sdk::Context context;
        context.kernels = &provider;
        context.workspace = &workspace;
        context.n_threads = threads;
        auto report = [&](const char* pass, double seconds) {
          const double per_token = seconds / static_cast<double>(batch * length);
          std::printf("%-12s %-9s %5lld %6lld %7d %8.2f %12.2f %16.3f\n", name.c_str(), pass,
                      static_cast<long long>(batch), static_cast<long long>(length), threads, seconds * 1e3,
                      per_token * 1e6, per_token * 24 * 1e3);
          std::fflush(stdout);
        };
        report("forward", median_seconds(runs, [&] {
                 if (!sdk::ssd_forward(context, problem.forward()).ok()) std::abort();
               }));
        if (with_backward) {
          report("backward", median_seconds(runs, [&] {
                   if (!sdk::ssd_backward(context, problem.backward()).ok()) std::abort();
                 }));
        }
      }
    }
  }
  return 0;
}
