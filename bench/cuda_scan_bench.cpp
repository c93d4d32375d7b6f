// GPU selective-scan throughput: times scan/cuda's forward and backward on large problems
// (B * E in the thousands, L 4096 to 16384) with CUDA events, and prints the median and the
// fastest run and the effective bandwidth: the bytes of the inputs and outputs, each read or
// written once, over the median time.
//
//   cuda_scan_bench [--runs N] [--dtype f32|f16|bf16] [--shape B,L,E,N]...
//
// Bytes counted (s = bytes per element of the problem dtype, f32 for A, D, bias and states):
//   forward:  s * B * L * (4 E + 2 N)   u, delta, z read, y written; B, C read
//   backward: s * B * L * (7 E + 4 N)   u, delta, z, grad_y read, grad_u, grad_delta, grad_z
//                                        written; B, C read, grad_B, grad_C written
// plus the small (E, N) and (B, E, N) tensors. Gradients accumulate (+=), so the backward
// really reads its outputs too: its figure is a lower bound of the traffic.
//
// Inputs are random with Mamba's ranges (A = -(n + 1), dt = softplus(delta + bias) around
// 0.01..0.1), with D, z and delta_bias present, delta_softplus on. Needs a CUDA device.
//
// Dimensions: B batch, L length, E d_inner, N d_state.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "mambakit/plugin_host.hpp"
#include "mambakit/sdk/scan_calls.hpp"

namespace {

namespace sdk = mambakit::sdk;

constexpr sdk::Device kGpu{sdk::DeviceType::kCuda, 0};

void check(cudaError_t error, const char* what) {
  if (error != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(error));
}
#define CUDA_CHECK(expr) check((expr), #expr)

struct Shape {
  std::int64_t batch, length, d_inner, d_state;
};

/// Workspace that keeps freed blocks for reuse, so that timed calls do not cudaMalloc. One
/// stream only: a block is reused by later work on the same stream.
class CachingWorkspace final : public sdk::WorkspaceAllocator {
 public:
  CachingWorkspace() = default;
  CachingWorkspace(const CachingWorkspace&) = delete;
  CachingWorkspace& operator=(const CachingWorkspace&) = delete;
  ~CachingWorkspace() {
    for (auto& [bytes, blocks] : free_) {
      for (void* block : blocks) cudaFree(block);
    }
  }

  void* allocate(std::size_t bytes, std::size_t alignment) noexcept override {
    if (alignment > 256) return nullptr;
    auto& blocks = free_[bytes];
    if (!blocks.empty()) {
      void* block = blocks.back();
      blocks.pop_back();
      size_[block] = bytes;
      return block;
    }
    void* block = nullptr;
    if (cudaMalloc(&block, bytes == 0 ? 1 : bytes) != cudaSuccess) return nullptr;
    size_[block] = bytes;
    return block;
  }
  void deallocate(void* memory) noexcept override {
    if (memory == nullptr) return;
    const auto it = size_.find(memory);
    free_[it->second].push_back(memory);
    size_.erase(it);
  }

 private:
  std::map<std::size_t, std::vector<void*>> free_;
  std::map<void*, std::size_t> size_;
};

/// A device buffer of `count` elements of `dtype`, filled with offset + scale * U(-1, 1).
class DeviceBuffer {
 public:
  DeviceBuffer(std::int64_t count, sdk::DType dtype, float scale, float offset, std::uint64_t seed) : dtype_(dtype) {
    const std::size_t element = sdk::dtype_size(dtype);
    CUDA_CHECK(cudaMalloc(&data_, static_cast<std::size_t>(count) * element));
    // Filled on the host in slices (splitmix64), converted, copied.
    constexpr std::int64_t kSlice = std::int64_t{1} << 22;
    std::vector<unsigned char> host(static_cast<std::size_t>(std::min(count, kSlice)) * element);
    std::uint64_t state = seed * 0x9E3779B97F4A7C15ull + 1;
    for (std::int64_t start = 0; start < count; start += kSlice) {
      const std::int64_t n = std::min(kSlice, count - start);
      for (std::int64_t k = 0; k < n; ++k) {
        std::uint64_t x = (state += 0x9E3779B97F4A7C15ull);
        x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
        x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
        x ^= x >> 31;
        const float unit = static_cast<float>(x >> 40) / static_cast<float>(1u << 24) * 2.0f - 1.0f;
        store(host.data(), k, offset + scale * unit);
      }
      CUDA_CHECK(cudaMemcpy(static_cast<unsigned char*>(data_) + start * static_cast<std::int64_t>(element), host.data(),
                            static_cast<std::size_t>(n) * element, cudaMemcpyHostToDevice));
    }
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() { cudaFree(data_); }

  [[nodiscard]] sdk::TensorView view(std::initializer_list<std::int64_t> shape) const {
    return sdk::make_view(data_, dtype_, kGpu, shape);
  }
  [[nodiscard]] void* data() const { return data_; }

 private:
  void store(unsigned char* host, std::int64_t k, float v) const {
    if (dtype_ == sdk::DType::kF32) {
      std::memcpy(host + k * 4, &v, 4);
    } else if (dtype_ == sdk::DType::kF16) {
      const __half h = __float2half_rn(v);
      std::memcpy(host + k * 2, &h, 2);
    } else {
      const __nv_bfloat16 h = __float2bfloat16_rn(v);
      std::memcpy(host + k * 2, &h, 2);
    }
  }

  void* data_ = nullptr;
  sdk::DType dtype_;
};

/// Inputs, outputs and gradients of one problem on the device.
struct Problem {
  Shape s;
  DeviceBuffer u, delta, B, C, z, y, grad_y, grad_u, grad_delta, grad_B, grad_C, grad_z;
  DeviceBuffer D, delta_bias, final_state, grad_A, grad_D, grad_delta_bias;
  DeviceBuffer A;

  Problem(Shape shape, sdk::DType dtype)
      : s(shape),
        u(tokens() * s.d_inner, dtype, 1.0f, 0.0f, 1),
        delta(tokens() * s.d_inner, dtype, 1.0f, -3.3f, 2),
        B(tokens() * s.d_state, dtype, 1.0f, 0.0f, 3),
        C(tokens() * s.d_state, dtype, 1.0f, 0.0f, 4),
        z(tokens() * s.d_inner, dtype, 2.0f, 0.0f, 5),
        y(tokens() * s.d_inner, dtype, 0.0f, 0.0f, 6),
        grad_y(tokens() * s.d_inner, dtype, 1.0f, 0.0f, 7),
        grad_u(tokens() * s.d_inner, dtype, 0.0f, 0.0f, 8),
        grad_delta(tokens() * s.d_inner, dtype, 0.0f, 0.0f, 9),
        grad_B(tokens() * s.d_state, dtype, 0.0f, 0.0f, 10),
        grad_C(tokens() * s.d_state, dtype, 0.0f, 0.0f, 11),
        grad_z(tokens() * s.d_inner, dtype, 0.0f, 0.0f, 12),
        D(s.d_inner, sdk::DType::kF32, 1.0f, 0.0f, 13),
        delta_bias(s.d_inner, sdk::DType::kF32, 0.1f, 0.0f, 14),
        final_state(s.batch * s.d_inner * s.d_state, sdk::DType::kF32, 0.0f, 0.0f, 15),
        grad_A(s.d_inner * s.d_state, sdk::DType::kF32, 0.0f, 0.0f, 16),
        grad_D(s.d_inner, sdk::DType::kF32, 0.0f, 0.0f, 17),
        grad_delta_bias(s.d_inner, sdk::DType::kF32, 0.0f, 0.0f, 18),
        A(s.d_inner * s.d_state, sdk::DType::kF32, 0.0f, 0.0f, 19) {
    std::vector<float> host(static_cast<std::size_t>(s.d_inner * s.d_state));
    for (std::int64_t e = 0; e < s.d_inner; ++e) {
      for (std::int64_t n = 0; n < s.d_state; ++n) host[e * s.d_state + n] = -static_cast<float>(n + 1);
    }
    CUDA_CHECK(cudaMemcpy(A.data(), host.data(), host.size() * sizeof(float), cudaMemcpyHostToDevice));
  }

  [[nodiscard]] std::int64_t tokens() const { return s.batch * s.length; }

  [[nodiscard]] sdk::ScanForwardArgs forward_args() const {
    const auto [b, l, e, n] = s;
    sdk::ScanForwardArgs args;
    args.u = u.view({b, l, e});
    args.delta = delta.view({b, l, e});
    args.A = A.view({e, n});
    args.B = B.view({b, l, n});
    args.C = C.view({b, l, n});
    args.D = D.view({e});
    args.z = z.view({b, l, e});
    args.delta_bias = delta_bias.view({e});
    args.delta_softplus = true;
    args.final_state = final_state.view({b, e, n});
    args.y = y.view({b, l, e});
    return args;
  }

  [[nodiscard]] sdk::ScanBackwardArgs backward_args() const {
    const auto [b, l, e, n] = s;
    sdk::ScanBackwardArgs args;
    args.forward = forward_args();
    args.grad_y = grad_y.view({b, l, e});
    args.grad_u = grad_u.view({b, l, e});
    args.grad_delta = grad_delta.view({b, l, e});
    args.grad_A = grad_A.view({e, n});
    args.grad_B = grad_B.view({b, l, n});
    args.grad_C = grad_C.view({b, l, n});
    args.grad_D = grad_D.view({e});
    args.grad_z = grad_z.view({b, l, e});
    args.grad_delta_bias = grad_delta_bias.view({e});
    return args;
  }
};

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const std::size_t mid = values.size() / 2;
  return values.size() % 2 == 1 ? values[mid] : 0.5 * (values[mid - 1] + values[mid]);
}

/// Milliseconds of each of `runs` calls of `call` (after two warm-up calls), by CUDA events.
template <class Call>
std::vector<double> time_runs(int runs, Call&& call) {
  cudaEvent_t start = nullptr, stop = nullptr;
  CUDA_CHECK(cudaEventCreate(&start));
  CUDA_CHECK(cudaEventCreate(&stop));
  for (int i = 0; i < 2; ++i) call();
  std::vector<double> times;
  for (int i = 0; i < runs; ++i) {
    CUDA_CHECK(cudaEventRecord(start));
    call();
    CUDA_CHECK(cudaEventRecord(stop));
    CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0.0f;
    CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    times.push_back(ms);
  }
  CUDA_CHECK(cudaEventDestroy(start));
  CUDA_CHECK(cudaEventDestroy(stop));
  return times;
}

void require_ok(const sdk::Status& status, const char* what) {
  if (!status.ok()) throw std::runtime_error(std::string(what) + ": " + status.message);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    int runs = 20;
    sdk::DType dtype = sdk::DType::kF32;
    std::vector<Shape> shapes;
    for (int i = 1; i < argc; ++i) {
      const std::string arg = argv[i];
      if (arg == "--runs" && i + 1 < argc) {
        runs = std::max(1, std::atoi(argv[++i]));
      } else if (arg == "--dtype" && i + 1 < argc) {
        const std::string name = argv[++i];
        if (name == "f32") {
          dtype = sdk::DType::kF32;
        } else if (name == "f16") {
          dtype = sdk::DType::kF16;
        } else if (name == "bf16") {
          dtype = sdk::DType::kBF16;
        } else {
          std::fprintf(stderr, "cuda_scan_bench: --dtype wants f32, f16 or bf16, got %s\n", name.c_str());
          return 2;
        }
      } else if (arg == "--shape" && i + 1 < argc) {
        long long b = 0, l = 0, e = 0, n = 0;
        if (std::sscanf(argv[++i], "%lld,%lld,%lld,%lld", &b, &l, &e, &n) != 4 || b < 1 || l < 1 || e < 1 || n < 1) {
          std::fprintf(stderr, "cuda_scan_bench: --shape wants B,L,E,N (positive integers), got %s\n", argv[i]);
          return 2;
        }
        shapes.push_back({b, l, e, n});
      } else {
        std::fprintf(stderr, "usage: cuda_scan_bench [--runs N] [--dtype f32|f16|bf16] [--shape B,L,E,N]...\n");
        return 2;
      }
    }
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
      std::fprintf(stderr, "cuda_scan_bench: no CUDA device\n");
      return 1;
    }
    cudaDeviceProp properties{};
    CUDA_CHECK(cudaGetDeviceProperties(&properties, 0));
    std::printf("device: %s, %d SMs; dtype %s; %d runs per row (median, min)\n", properties.name,
                properties.multiProcessorCount, sdk::dtype_name(dtype), runs);
    if (shapes.empty()) {
      shapes = {{8, 4096, 1536, 16}, {8, 8192, 1536, 16}, {8, 16384, 1536, 16}, {4, 16384, 4096, 16}};
    }

    mambakit::PluginHost host;
    host.load_directory(mambakit::PluginHost::default_plugin_dir());
    auto scan = mambakit::kernel_as<sdk::ScanBackend>(host.create_kernel(sdk::kSelectiveScanKind, "cuda"));
    CachingWorkspace workspace;
    sdk::Context context;
    context.device = kGpu;
    context.workspace = &workspace;

    std::printf("%-8s %2s %6s %5s %3s %10s %10s %10s\n", "pass", "B", "L", "E", "N", "median ms", "min ms", "GB/s");
    for (const Shape& shape : shapes) {
      const Problem problem(shape, dtype);
      const double element = static_cast<double>(sdk::dtype_size(dtype));
      const double tokens = static_cast<double>(shape.batch * shape.length);
      const double E = static_cast<double>(shape.d_inner), N = static_cast<double>(shape.d_state);
      const double small = 4.0 * (3.0 * E + E * N + static_cast<double>(shape.batch) * E * N);
      const double forward_bytes = element * tokens * (4.0 * E + 2.0 * N) + small;
      const double backward_bytes = element * tokens * (7.0 * E + 4.0 * N) + small + 4.0 * (E * N + 2.0 * E);
      const auto forward_args = problem.forward_args();
      const auto backward_args = problem.backward_args();
      const auto report = [&](const char* pass, const std::vector<double>& times, double bytes) {
        const double med = median(times);
        std::printf("%-8s %2lld %6lld %5lld %3lld %10.3f %10.3f %10.1f\n", pass, static_cast<long long>(shape.batch),
                    static_cast<long long>(shape.length), static_cast<long long>(shape.d_inner),
                    static_cast<long long>(shape.d_state), med, *std::min_element(times.begin(), times.end()),
                    bytes / (med * 1e-3) / 1e9);
        std::fflush(stdout);
      };
      report("forward", time_runs(runs, [&] { require_ok(sdk::selective_scan_forward(*scan, context, forward_args), "forward"); }),
             forward_bytes);
      report("backward",
             time_runs(runs, [&] { require_ok(sdk::selective_scan_backward(*scan, context, backward_args), "backward"); }),
             backward_bytes);
      CUDA_CHECK(cudaDeviceSynchronize());
    }
    return 0;
  } catch (const std::exception& error) {
    std::fprintf(stderr, "cuda_scan_bench: %s\n", error.what());
    return 1;
  }
}
