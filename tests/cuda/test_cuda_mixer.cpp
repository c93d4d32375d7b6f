// mixer/s6 and head/lm on CUDA tensors against the same plugins on the CPU, the oracle (with
// scan/sequential there and scan/cuda on the GPU):
//   - s6 forward: y and the final conv and SSM states, lengths 1, 2, 3 (shorter than d_conv),
//     7, 64, 1000, batch 1 and 3, zero and given initial state, f32, f16 and bf16 parameters
//     (the CPU oracle gets the same 16-bit values), two small configs (one with in/out_proj
//     bias, one with d_conv 3 and no conv bias, sizes that are not multiples of the few-rows
//     kernel's load width) and the 130m shape (d_model 768, d_state 16, d_conv 4, expand 2,
//     dt_rank 48);
//   - s6 step, 20 tokens position by position against the CPU step, then the states;
//   - head/lm few rows (decode kernel) and many rows (cuBLAS), tied and untied, f32/f16/bf16;
//   - a mixer step and a head forward captured into a CUDA graph and replayed token by token
//     (the decode path must be capture-safe: no cuBLAS, allocation, copy or synchronisation);
//   - s6 backward after a forward that saves its activations (y and the saved activations
//     compared too): what backward adds to pre-filled grad_x, every parameter gradient and the
//     initial state gradients, at B=1 L=1, B=2 L=3 (shorter than d_conv), B=2 L=37 and B=3
//     L=300, with and without initial state and final state gradient, and with every other
//     parameter frozen (absent gradient view), for both small configs, and the 130m shape;
//   - head/lm backward: grad_hidden and grad_W added to pre-filled buffers, each also alone;
//   - without a GPU: both plugins report CUDA and backward, refuse backward with f16 or bf16
//     parameters (kInvalidArgument) before touching memory, a CUDA error is a kDeviceError
//     Status.
// Parameters have realistic scales: nn.Linear's U(+-1/sqrt(fan_in)), A_log = log(1..N),
// dt_proj.bias = softplus^-1 of a log-uniform dt in [0.001, 0.1].
//
// Error measure: max |gpu - cpu| / max |cpu| over a tensor, tolerance 1e-4 (f32 GEMMs and
// reductions sum in different orders; both sides compute in f32 from the same values). For a
// gradient, over what backward added to the pre-filled buffer, so an overwrite fails.
//
// Dimensions: B batch, L length, D d_model, E d_inner, N d_state, K d_conv, V vocab.

#include <cuda_runtime_api.h>

#include <catch2/catch.hpp>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "cuda_test_support.hpp"
#include "fixtures.hpp"
#include "mambakit/plugin_host.hpp"
#include "mambakit/sdk/half.hpp"
#include "mambakit/sdk/head.hpp"
#include "mambakit/sdk/mixer.hpp"
#include "scan_case.hpp"
#include "test_workspace.hpp"

namespace sdk = mambakit::sdk;
using mambakit::test::check_status;
using mambakit::test::DeviceWorkspace;
using mambakit::test::kGpu;
using mambakit::test::require_cuda_device;
using mambakit::test::round_to;
using mambakit::test::TestStream;
using mambakit::test::TestWorkspace;

namespace {

constexpr double kTolerance = 1e-4;

const char* const kSmallBias = R"({"d_model": 16, "d_state": 4, "d_conv": 4, "expand": 2, "dt_rank": 3, "bias": true})";
const char* const kSmallConv3 =
    R"({"d_model": 20, "d_state": 5, "d_conv": 3, "expand": 2, "dt_rank": 2, "conv_bias": false})";
const char* const k130m = R"({"d_model": 768, "d_state": 16, "d_conv": 4, "expand": 2, "dt_rank": 48})";

constexpr sdk::DType kParamDTypes[] = {sdk::DType::kF32, sdk::DType::kF16, sdk::DType::kBF16};

int cpu_threads() { return static_cast<int>(std::max(1u, std::min(16u, std::thread::hardware_concurrency()))); }

/// max |actual - expected| / max |expected|; +inf for a non-finite value or a size mismatch.
double relative_to_max(const std::vector<float>& actual, const std::vector<float>& expected) {
  return mambakit::test::relative_error(actual, expected, 1.0);
}

std::vector<float> random_values(std::int64_t count, double low, double high, std::mt19937& rng) {
  std::uniform_real_distribution<double> dist(low, high);
  std::vector<float> values(static_cast<std::size_t>(count));
  for (auto& v : values) v = static_cast<float>(dist(rng));
  return values;
}

/// A host tensor: f32 values, and for a 16-bit dtype their encoding (the values are rounded to
/// it, so both views hold the same numbers).
class HostTensor {
 public:
  HostTensor() = default;
  HostTensor(std::vector<std::int64_t> shape, sdk::DType dtype, std::vector<float> values)
      : shape_(std::move(shape)), dtype_(dtype), values_(std::move(values)) {
    for (auto& v : values_) v = round_to(v, dtype_);
    if (dtype_ == sdk::DType::kF16 || dtype_ == sdk::DType::kBF16) {
      bits_.resize(values_.size());
      for (std::size_t i = 0; i < values_.size(); ++i) {
        bits_[i] = dtype_ == sdk::DType::kF16 ? sdk::f32_to_f16(values_[i]) : sdk::f32_to_bf16(values_[i]);
      }
    }
  }

  [[nodiscard]] sdk::TensorView view() {
    void* data = bits_.empty() ? static_cast<void*>(values_.data()) : static_cast<void*>(bits_.data());
    return sdk::make_view(data, dtype_, sdk::Device{}, shape_.data(), static_cast<std::int32_t>(shape_.size()));
  }
  [[nodiscard]] const void* bytes() const {
    return bits_.empty() ? static_cast<const void*>(values_.data()) : static_cast<const void*>(bits_.data());
  }
  [[nodiscard]] std::size_t byte_size() const { return values_.size() * sdk::dtype_size(dtype_); }
  [[nodiscard]] const std::vector<std::int64_t>& shape() const { return shape_; }
  [[nodiscard]] sdk::DType dtype() const { return dtype_; }
  [[nodiscard]] const std::vector<float>& values() const { return values_; }
  std::vector<float>& values() { return values_; }

 private:
  std::vector<std::int64_t> shape_;
  sdk::DType dtype_ = sdk::DType::kF32;
  std::vector<float> values_;
  std::vector<std::uint16_t> bits_;
};

/// Device memory holding a copy of a HostTensor, or `count` f32 values filled with NaN.
class DeviceTensor {
 public:
  DeviceTensor() = default;
  explicit DeviceTensor(const HostTensor& host)
      : memory_(host.byte_size()), shape_(host.shape()), dtype_(host.dtype()) {
    CUDA_REQUIRE(cudaMemcpy(memory_.data(), host.bytes(), memory_.bytes(), cudaMemcpyHostToDevice));
  }
  explicit DeviceTensor(std::vector<std::int64_t> shape) : shape_(std::move(shape)) {
    std::int64_t count = 1;
    for (const auto extent : shape_) count *= extent;
    memory_ = mambakit::test::DeviceMemory(static_cast<std::size_t>(count) * sizeof(float));
    CUDA_REQUIRE(cudaMemset(memory_.data(), 0xff, memory_.bytes()));  // all-ones bits: NaN, so unwritten outputs show
  }

  [[nodiscard]] sdk::TensorView view() const {
    return sdk::make_view(memory_.data(), dtype_, kGpu, shape_.data(), static_cast<std::int32_t>(shape_.size()));
  }
  /// The same memory viewed with another shape of as many elements.
  [[nodiscard]] sdk::TensorView view(std::initializer_list<std::int64_t> shape) const {
    return sdk::make_view(memory_.data(), dtype_, kGpu, shape);
  }
  /// Copies f32 `values` in (as many as the tensor holds).
  void write(const std::vector<float>& values, cudaStream_t stream = nullptr) {
    REQUIRE(dtype_ == sdk::DType::kF32);
    REQUIRE(values.size() * sizeof(float) == memory_.bytes());
    CUDA_REQUIRE(cudaMemcpyAsync(memory_.data(), values.data(), memory_.bytes(), cudaMemcpyHostToDevice, stream));
    CUDA_REQUIRE(cudaStreamSynchronize(stream));
  }
  /// The f32 contents.
  [[nodiscard]] std::vector<float> read() const {
    REQUIRE(dtype_ == sdk::DType::kF32);
    std::vector<float> out(memory_.bytes() / sizeof(float));
    CUDA_REQUIRE(cudaMemcpy(out.data(), memory_.data(), memory_.bytes(), cudaMemcpyDeviceToHost));
    return out;
  }

 private:
  mambakit::test::DeviceMemory memory_;
  std::vector<std::int64_t> shape_;
  sdk::DType dtype_ = sdk::DType::kF32;
};

/// A device workspace that never calls the CUDA runtime while serving: one arena allocated up
/// front, handed out in aligned pieces; deallocate() is a no-op, reset() starts over. What a
/// host uses while capturing a CUDA graph.
class ArenaWorkspace final : public sdk::WorkspaceAllocator {
 public:
  explicit ArenaWorkspace(std::size_t bytes) : memory_(bytes) {}

  void* allocate(std::size_t bytes, std::size_t alignment) noexcept override {
    const std::size_t start = (used_ + alignment - 1) / alignment * alignment;
    if (start + bytes > memory_.bytes()) return nullptr;
    used_ = start + bytes;
    return static_cast<unsigned char*>(memory_.data()) + start;
  }
  void deallocate(void*) noexcept override {}
  void reset() { used_ = 0; }

 private:
  mambakit::test::DeviceMemory memory_;
  std::size_t used_ = 0;
};

mambakit::test::ScanPtr& scan(const char* name) {
  static mambakit::test::ScanPtr sequential = mambakit::test::create_scan(mambakit::test::in_tree_plugins(), "sequential");
  static mambakit::test::ScanPtr cuda = mambakit::test::create_scan(mambakit::test::in_tree_plugins(), "cuda");
  return std::string(name) == "cuda" ? cuda : sequential;
}

sdk::Context cpu_context(TestWorkspace& workspace) {
  sdk::Context context;
  context.n_threads = cpu_threads();
  context.workspace = &workspace;
  context.kernels = mambakit::test::fixed_kernels(scan("sequential").get());
  return context;
}

sdk::Context gpu_context(sdk::WorkspaceAllocator& workspace, cudaStream_t stream) {
  sdk::Context context;
  context.device = kGpu;
  context.stream = stream;
  context.workspace = &workspace;
  context.kernels = mambakit::test::fixed_kernels(scan("cuda").get());
  return context;
}

/// A random value for element `i` of the parameter `name` (a Hugging Face name) of an S6 mixer.
float s6_param_value(const std::string& name, std::int64_t i, const std::vector<std::int64_t>& shape,
                     std::mt19937& rng) {
  std::uniform_real_distribution<double> unit(-1.0, 1.0);
  const double u = unit(rng);
  const double fan_in = static_cast<double>(shape.back());
  if (name == "A_log") return static_cast<float>(std::log(static_cast<double>(i % shape[1] + 1)));
  if (name == "D") return static_cast<float>(1.0 + 0.5 * u);
  if (name == "dt_proj.bias") {
    const double log_dt = std::log(0.001) + (0.5 * u + 0.5) * (std::log(0.1) - std::log(0.001));
    const double dt = std::exp(log_dt);
    return static_cast<float>(dt + std::log(-std::expm1(-dt)));  // softplus^-1(dt)
  }
  if (name == "in_proj.bias" || name == "out_proj.bias") return static_cast<float>(0.1 * u);
  if (name == "conv1d.bias") return static_cast<float>(0.5 * u);  // U(+-1/sqrt(K)) for K = 4
  return static_cast<float>(u / std::sqrt(fan_in));  // weights: U(+-1/sqrt(fan_in)); conv1d.weight's fan-in is K
}

/// An S6 mixer with random parameters in `dtype`, on the host and on the device.
struct S6Case {
  mambakit::MixerPtr mixer;
  std::int64_t d_model = 0, d_inner = 0, d_state = 0, d_conv = 0;
  std::vector<HostTensor> host_params;
  std::vector<DeviceTensor> device_params;
  std::vector<sdk::TensorView> host_views, device_views;

  S6Case(const char* config, sdk::DType dtype, std::uint32_t seed)
      : mixer(mambakit::test::in_tree_plugins().create_mixer("s6", config)) {
    std::mt19937 rng(seed);
    for (std::int32_t i = 0; i < mixer->param_count(); ++i) {
      sdk::ParamSpec spec;
      check_status(mixer->param_spec(i, &spec));
      const std::string name = spec.tensor.name;
      std::vector<std::int64_t> shape(spec.tensor.shape, spec.tensor.shape + spec.tensor.rank);
      std::vector<float> values(static_cast<std::size_t>(spec.tensor.numel()));
      for (std::int64_t k = 0; k < spec.tensor.numel(); ++k) values[k] = s6_param_value(name, k, shape, rng);
      if (name == "in_proj.weight") d_model = shape[1];
      if (name == "A_log") {
        d_inner = shape[0];
        d_state = shape[1];
      }
      if (name == "conv1d.weight") d_conv = shape[2];
      host_params.emplace_back(shape, dtype, std::move(values));
    }
    for (auto& p : host_params) {
      host_views.push_back(p.view());
      device_params.emplace_back(p);
      device_views.push_back(device_params.back().view());
    }
  }
};

/// The initial state of a (batch) run: conv state (B, E, K) and SSM state (B, E, N), random or zero.
std::vector<HostTensor> initial_state(const S6Case& c, std::int64_t batch, bool random, std::mt19937& rng) {
  const std::int64_t E = c.d_inner;
  auto values = [&](std::int64_t count) {
    return random ? random_values(count, -1.0, 1.0, rng) : std::vector<float>(static_cast<std::size_t>(count), 0.f);
  };
  std::vector<HostTensor> state;
  state.emplace_back(std::vector<std::int64_t>{batch, E, c.d_conv}, sdk::DType::kF32, values(batch * E * c.d_conv));
  state.emplace_back(std::vector<std::int64_t>{batch, E, c.d_state}, sdk::DType::kF32, values(batch * E * c.d_state));
  return state;
}

std::string describe(const char* config, sdk::DType dtype, std::int64_t batch, std::int64_t length, bool given) {
  return std::string(config) + " " + sdk::dtype_name(dtype) + " B=" + std::to_string(batch) +
         " L=" + std::to_string(length) + (given ? " initial state given" : " zero initial state");
}

/// The largest error seen per compared output; note() also checks each against kTolerance.
struct WorstErrors {
  std::vector<std::pair<std::string, double>> worst;
  void note(const std::string& name, double error) {
    CHECK(error <= kTolerance);
    for (auto& [seen, value] : worst) {
      if (seen == name) {
        value = std::max(value, error);
        return;
      }
    }
    worst.emplace_back(name, error);
  }
  void print(const std::string& title) const {
    std::printf("%s: largest max|gpu - cpu| / max|cpu|:\n", title.c_str());
    for (const auto& [name, value] : worst) std::printf("  %-20s %.3g\n", name.c_str(), value);
  }
};

/// Runs forward on the CPU (oracle) and on the GPU from the same inputs; compares y and the
/// final states.
void check_forward(S6Case& c, const char* config, sdk::DType dtype, std::int64_t batch, std::int64_t length,
                   bool given, std::uint32_t seed, cudaStream_t stream, WorstErrors& worst) {
  INFO(describe(config, dtype, batch, length, given));
  std::mt19937 rng(seed);
  const std::int64_t B = batch, L = length, D = c.d_model, E = c.d_inner;
  HostTensor x({B, L, D}, sdk::DType::kF32, random_values(B * L * D, -1.0, 1.0, rng));
  std::vector<HostTensor> initial = initial_state(c, B, true, rng);
  std::vector<HostTensor> final_cpu = initial_state(c, B, false, rng);
  HostTensor y_cpu({B, L, D}, sdk::DType::kF32, std::vector<float>(static_cast<std::size_t>(B * L * D), 0.f));

  TestWorkspace cpu_workspace;
  std::vector<sdk::TensorView> initial_views = {initial[0].view(), initial[1].view()};
  std::vector<sdk::TensorView> final_views = {final_cpu[0].view(), final_cpu[1].view()};
  sdk::MixerForwardArgs cpu;
  cpu.params = c.host_views.data();
  cpu.x = x.view();
  cpu.y = y_cpu.view();
  cpu.initial_state = given ? initial_views.data() : nullptr;
  cpu.final_state = final_views.data();
  check_status(c.mixer->forward(cpu_context(cpu_workspace), cpu));
  CHECK(cpu_workspace.live() == 0);

  const DeviceTensor x_gpu(x), conv0(initial[0]), ssm0(initial[1]);
  const DeviceTensor y_gpu({B, L, D}), conv1({B, E, c.d_conv}), ssm1({B, E, c.d_state});
  const std::vector<sdk::TensorView> gpu_initial = {conv0.view(), ssm0.view()};
  const std::vector<sdk::TensorView> gpu_final = {conv1.view(), ssm1.view()};
  DeviceWorkspace workspace;
  sdk::MixerForwardArgs gpu;
  gpu.params = c.device_views.data();
  gpu.x = x_gpu.view();
  gpu.y = y_gpu.view();
  gpu.initial_state = given ? gpu_initial.data() : nullptr;
  gpu.final_state = gpu_final.data();
  check_status(c.mixer->forward(gpu_context(workspace, stream), gpu));
  CUDA_REQUIRE(cudaStreamSynchronize(stream));
  CHECK(workspace.live() == 0);

  worst.note("y", relative_to_max(y_gpu.read(), y_cpu.values()));
  worst.note("conv state", relative_to_max(conv1.read(), final_cpu[0].values()));
  worst.note("ssm state", relative_to_max(ssm1.read(), final_cpu[1].values()));
}

/// Steps the CPU and the GPU through `tokens` tokens from the same state, comparing y at every
/// position and the states at the end.
void check_step(S6Case& c, const char* config, sdk::DType dtype, std::int64_t batch, bool given, std::int64_t tokens,
                std::uint32_t seed, cudaStream_t stream, WorstErrors& worst) {
  INFO("step " << describe(config, dtype, batch, tokens, given));
  std::mt19937 rng(seed);
  const std::int64_t B = batch, D = c.d_model;
  std::vector<HostTensor> state = initial_state(c, B, given, rng);
  DeviceTensor conv(state[0]), ssm(state[1]);
  const std::vector<sdk::TensorView> cpu_state = {state[0].view(), state[1].view()};
  const std::vector<sdk::TensorView> gpu_state = {conv.view(), ssm.view()};
  DeviceTensor x_gpu({B, D}), y_gpu({B, D});
  TestWorkspace cpu_workspace;
  DeviceWorkspace workspace;
  for (std::int64_t t = 0; t < tokens; ++t) {
    INFO("token " << t);
    HostTensor x({B, D}, sdk::DType::kF32, random_values(B * D, -1.0, 1.0, rng));
    HostTensor y({B, D}, sdk::DType::kF32, std::vector<float>(static_cast<std::size_t>(B * D), 0.f));
    sdk::MixerStepArgs cpu;
    cpu.params = c.host_views.data();
    cpu.x = x.view();
    cpu.y = y.view();
    cpu.state = cpu_state.data();
    check_status(c.mixer->step(cpu_context(cpu_workspace), cpu));

    x_gpu.write(x.values(), stream);
    sdk::MixerStepArgs gpu;
    gpu.params = c.device_views.data();
    gpu.x = x_gpu.view();
    gpu.y = y_gpu.view();
    gpu.state = gpu_state.data();
    check_status(c.mixer->step(gpu_context(workspace, stream), gpu));
    CUDA_REQUIRE(cudaStreamSynchronize(stream));
    worst.note("y", relative_to_max(y_gpu.read(), y.values()));
  }
  CHECK(workspace.live() == 0);
  CHECK(cpu_workspace.live() == 0);
  worst.note("conv state", relative_to_max(conv.read(), state[0].values()));
  worst.note("ssm state", relative_to_max(ssm.read(), state[1].values()));
}

/// Forward over every length, batch and initial state for one config, in every parameter dtype.
void check_forward_config(const char* config, std::initializer_list<std::int64_t> lengths, std::uint32_t seed) {
  const TestStream stream;
  WorstErrors worst;
  for (const sdk::DType dtype : kParamDTypes) {
    S6Case c(config, dtype, seed++);
    for (const std::int64_t length : lengths) {
      for (const std::int64_t batch : {1, 3}) {
        for (const bool given : {false, true}) check_forward(c, config, dtype, batch, length, given, seed++, stream, worst);
      }
    }
  }
  worst.print(config);
}

/// `after - before`, element by element: what a call added to a pre-filled gradient.
std::vector<float> added(const std::vector<float>& after, const std::vector<float>& before) {
  std::vector<float> difference(after.size());
  for (std::size_t i = 0; i < after.size() && i < before.size(); ++i) difference[i] = after[i] - before[i];
  return difference;
}

/// A gradient output pre-filled with the same small random values on the host and the device,
/// so that both sides must accumulate (+=) into it; error() compares what each side added.
struct GradBuffer {
  HostTensor host;
  DeviceTensor device;
  std::vector<float> before;

  GradBuffer(const std::vector<std::int64_t>& shape, std::mt19937& rng)
      : host(shape, sdk::DType::kF32, random_values(numel(shape), -0.01, 0.01, rng)), device(host),
        before(host.values()) {}

  [[nodiscard]] double error() const {
    return relative_to_max(added(device.read(), before), added(host.values(), before));
  }

  static std::int64_t numel(const std::vector<std::int64_t>& shape) {
    std::int64_t count = 1;
    for (const auto extent : shape) count *= extent;
    return count;
  }
};

/// How a backward case is run: initial state given, final state's gradient given, and the
/// parameters whose index has parity `frozen_parity` frozen (an absent gradient view; -1: none).
struct BackwardOptions {
  bool given = false, grad_final = false;
  int frozen_parity = -1;
};

/// Forward with saved activations then backward, on the CPU (oracle) and on the GPU from the
/// same inputs and pre-filled gradients; compares y, the saved activations, and what backward
/// added to grad_x, every parameter's gradient and the initial state's gradients.
void check_backward(S6Case& c, const char* config, std::int64_t batch, std::int64_t length, BackwardOptions options,
                    std::uint32_t seed, cudaStream_t stream, WorstErrors& worst) {
  INFO("backward " << describe(config, sdk::DType::kF32, batch, length, options.given)
                   << (options.grad_final ? ", final state gradient given" : "")
                   << (options.frozen_parity >= 0 ? ", every other parameter frozen" : ""));
  std::mt19937 rng(seed);
  const std::int64_t B = batch, L = length, D = c.d_model;
  HostTensor x({B, L, D}, sdk::DType::kF32, random_values(B * L * D, -1.0, 1.0, rng));
  HostTensor grad_y({B, L, D}, sdk::DType::kF32, random_values(B * L * D, -1.0, 1.0, rng));
  std::vector<HostTensor> initial = initial_state(c, B, true, rng);
  std::vector<HostTensor> grad_final = initial_state(c, B, true, rng);
  HostTensor y_cpu({B, L, D}, sdk::DType::kF32, std::vector<float>(static_cast<std::size_t>(B * L * D), 0.f));
  const DeviceTensor x_gpu(x), grad_y_gpu(grad_y), conv0(initial[0]), ssm0(initial[1]), conv_grad1(grad_final[0]),
      ssm_grad1(grad_final[1]), y_gpu({B, L, D});

  std::vector<HostTensor> saved_cpu;
  std::vector<DeviceTensor> saved_gpu;
  std::vector<sdk::TensorView> saved_cpu_views, saved_gpu_views;
  for (std::int32_t i = 0; i < c.mixer->saved_count(); ++i) {
    sdk::TensorSpec spec;
    check_status(c.mixer->saved_spec(i, B, L, &spec));
    std::vector<std::int64_t> shape(spec.shape, spec.shape + spec.rank);
    saved_cpu.emplace_back(shape, sdk::DType::kF32, std::vector<float>(static_cast<std::size_t>(spec.numel()), 0.f));
    saved_gpu.emplace_back(shape);
  }
  for (auto& t : saved_cpu) saved_cpu_views.push_back(t.view());
  for (auto& t : saved_gpu) saved_gpu_views.push_back(t.view());

  GradBuffer grad_x({B, L, D}, rng);
  std::vector<GradBuffer> grad_params, grad_initial;
  std::vector<std::string> names;
  for (std::int32_t i = 0; i < c.mixer->param_count(); ++i) {
    sdk::ParamSpec spec;
    check_status(c.mixer->param_spec(i, &spec));
    names.emplace_back(spec.tensor.name);
    grad_params.emplace_back(std::vector<std::int64_t>(spec.tensor.shape, spec.tensor.shape + spec.tensor.rank), rng);
  }
  for (const HostTensor& state : initial) grad_initial.emplace_back(state.shape(), rng);
  std::vector<sdk::TensorView> grad_params_cpu, grad_params_gpu;
  for (std::size_t i = 0; i < grad_params.size(); ++i) {
    const bool frozen = static_cast<int>(i % 2) == options.frozen_parity;
    grad_params_cpu.push_back(frozen ? sdk::TensorView{} : grad_params[i].host.view());
    grad_params_gpu.push_back(frozen ? sdk::TensorView{} : grad_params[i].device.view());
  }

  const std::vector<sdk::TensorView> initial_cpu = {initial[0].view(), initial[1].view()};
  const std::vector<sdk::TensorView> initial_gpu = {conv0.view(), ssm0.view()};
  const std::vector<sdk::TensorView> grad_final_cpu = {grad_final[0].view(), grad_final[1].view()};
  const std::vector<sdk::TensorView> grad_final_gpu = {conv_grad1.view(), ssm_grad1.view()};
  const std::vector<sdk::TensorView> grad_initial_cpu = {grad_initial[0].host.view(), grad_initial[1].host.view()};
  const std::vector<sdk::TensorView> grad_initial_gpu = {grad_initial[0].device.view(),
                                                         grad_initial[1].device.view()};

  // Runs forward (saving) and backward on one side, with that side's views.
  auto run = [&](const sdk::Context& context, const sdk::TensorView* params, const sdk::TensorView& x_view,
                 const sdk::TensorView& y_view, const sdk::TensorView& grad_y_view, const sdk::TensorView& grad_x_view,
                 const std::vector<sdk::TensorView>& saved, const std::vector<sdk::TensorView>& initial_views,
                 const std::vector<sdk::TensorView>& grad_final_views, const std::vector<sdk::TensorView>& grads,
                 const std::vector<sdk::TensorView>& grad_initial_views) {
    sdk::MixerForwardArgs forward;
    forward.params = params;
    forward.x = x_view;
    forward.y = y_view;
    forward.initial_state = options.given ? initial_views.data() : nullptr;
    forward.saved = saved.data();
    check_status(c.mixer->forward(context, forward));
    sdk::MixerBackwardArgs backward;
    backward.params = params;
    backward.x = x_view;
    backward.initial_state = forward.initial_state;
    backward.saved = saved.data();
    backward.grad_y = grad_y_view;
    backward.grad_final_state = options.grad_final ? grad_final_views.data() : nullptr;
    backward.grad_x = grad_x_view;
    backward.grad_params = grads.data();
    backward.grad_initial_state = grad_initial_views.data();
    check_status(c.mixer->backward(context, backward));
  };
  TestWorkspace cpu_workspace;
  run(cpu_context(cpu_workspace), c.host_views.data(), x.view(), y_cpu.view(), grad_y.view(), grad_x.host.view(),
      saved_cpu_views, initial_cpu, grad_final_cpu, grad_params_cpu, grad_initial_cpu);
  CHECK(cpu_workspace.live() == 0);
  DeviceWorkspace workspace;
  run(gpu_context(workspace, stream), c.device_views.data(), x_gpu.view(), y_gpu.view(), grad_y_gpu.view(),
      grad_x.device.view(), saved_gpu_views, initial_gpu, grad_final_gpu, grad_params_gpu, grad_initial_gpu);
  CUDA_REQUIRE(cudaStreamSynchronize(stream));
  CHECK(workspace.live() == 0);

  worst.note("y", relative_to_max(y_gpu.read(), y_cpu.values()));
  for (std::size_t i = 0; i < saved_cpu.size(); ++i) {
    worst.note("saved " + std::to_string(i), relative_to_max(saved_gpu[i].read(), saved_cpu[i].values()));
  }
  worst.note("grad_x", grad_x.error());
  for (std::size_t i = 0; i < grad_params.size(); ++i) {
    INFO("gradient of " << names[i]);
    worst.note(names[i], grad_params[i].error());
  }
  worst.note("grad conv_state", grad_initial[0].error());
  worst.note("grad ssm_state", grad_initial[1].error());
}

/// Backward at a few shapes, with and without initial state and final state gradient, and once
/// with every other parameter frozen (odd or even ones by turns), for one config (f32
/// parameters: backward needs them).
void check_backward_config(const char* config, std::uint32_t seed) {
  const TestStream stream;
  WorstErrors worst;
  S6Case c(config, sdk::DType::kF32, seed++);
  struct Shape {
    std::int64_t batch, length;
  };
  const Shape shapes[] = {{1, 1}, {2, 3}, {2, 37}, {3, 300}};
  for (int s = 0; s < 4; ++s) {
    const Shape shape = shapes[s];
    for (const bool given : {false, true}) {
      for (const bool grad_final : {false, true}) {
        check_backward(c, config, shape.batch, shape.length, {given, grad_final}, seed++, stream, worst);
      }
    }
    check_backward(c, config, shape.batch, shape.length, {true, true, s % 2}, seed++, stream, worst);
  }
  worst.print(std::string(config) + ", backward (what it added)");
}

/// An LM head with a random (V, D) weight in `dtype`, on the host and the device.
struct HeadCase {
  mambakit::HeadPtr head;
  HostTensor host_weight;
  DeviceTensor device_weight;
  sdk::TensorView host_view, device_view;

  HeadCase(std::int64_t d_model, std::int64_t vocab, bool tied, sdk::DType dtype, std::uint32_t seed)
      : head(mambakit::test::in_tree_plugins().create_head(
            "lm", "{\"d_model\": " + std::to_string(d_model) + ", \"vocab_size\": " + std::to_string(vocab) +
                      ", \"tie_embeddings\": " + (tied ? "true" : "false") + "}")) {
    std::mt19937 rng(seed);
    host_weight = HostTensor({vocab, d_model}, dtype, random_values(vocab * d_model, -0.1, 0.1, rng));
    device_weight = DeviceTensor(host_weight);
    host_view = host_weight.view();
    device_view = device_weight.view();
  }
};

/// Logits of `rows` = batch x length hidden rows on the CPU and the GPU; returns the error.
double check_head(HeadCase& h, std::int64_t batch, std::int64_t length, std::int64_t d_model, std::int64_t vocab,
                  std::uint32_t seed, cudaStream_t stream) {
  std::mt19937 rng(seed);
  HostTensor hidden({batch, length, d_model}, sdk::DType::kF32, random_values(batch * length * d_model, -2.0, 2.0, rng));
  HostTensor logits({batch, length, vocab}, sdk::DType::kF32,
                    std::vector<float>(static_cast<std::size_t>(batch * length * vocab), 0.f));
  TestWorkspace cpu_workspace;
  sdk::HeadForwardArgs cpu;
  cpu.params = &h.host_view;
  cpu.hidden = hidden.view();
  cpu.output = logits.view();
  check_status(h.head->forward(cpu_context(cpu_workspace), cpu));

  const DeviceTensor hidden_gpu(hidden), logits_gpu({batch, length, vocab});
  DeviceWorkspace workspace;
  sdk::HeadForwardArgs gpu;
  gpu.params = &h.device_view;
  gpu.hidden = hidden_gpu.view();
  gpu.output = logits_gpu.view();
  check_status(h.head->forward(gpu_context(workspace, stream), gpu));
  CUDA_REQUIRE(cudaStreamSynchronize(stream));
  CHECK(workspace.live() == 0);
  return relative_to_max(logits_gpu.read(), logits.values());
}

/// Head backward on the CPU and the GPU from the same inputs into pre-filled gradients (each
/// output skipped when not `with_hidden` / `with_weight`); returns the larger error of what was
/// added to grad_hidden and grad_W.
double check_head_backward(HeadCase& h, std::int64_t batch, std::int64_t length, std::int64_t d_model,
                           std::int64_t vocab, bool with_hidden, bool with_weight, std::uint32_t seed,
                           cudaStream_t stream) {
  std::mt19937 rng(seed);
  HostTensor hidden({batch, length, d_model}, sdk::DType::kF32,
                    random_values(batch * length * d_model, -2.0, 2.0, rng));
  HostTensor grad_logits({batch, length, vocab}, sdk::DType::kF32,
                         random_values(batch * length * vocab, -1.0, 1.0, rng));
  GradBuffer grad_hidden({batch, length, d_model}, rng), grad_weight({vocab, d_model}, rng);
  const DeviceTensor hidden_gpu(hidden), grad_logits_gpu(grad_logits);

  // The same call on either side; only the views and the context differ.
  auto run = [&](const sdk::Context& context, const sdk::TensorView& weight, const sdk::TensorView& input,
                 const sdk::TensorView& grad_output, const sdk::TensorView& grad_input, const sdk::TensorView& grad_w) {
    const sdk::TensorView grad_params = with_weight ? grad_w : sdk::TensorView{};
    sdk::HeadBackwardArgs args;
    args.params = &weight;
    args.hidden = input;
    args.grad_output = grad_output;
    if (with_hidden) args.grad_hidden = grad_input;
    args.grad_params = &grad_params;
    check_status(h.head->backward(context, args));
  };
  TestWorkspace cpu_workspace;
  run(cpu_context(cpu_workspace), h.host_view, hidden.view(), grad_logits.view(), grad_hidden.host.view(),
      grad_weight.host.view());
  DeviceWorkspace workspace;
  run(gpu_context(workspace, stream), h.device_view, hidden_gpu.view(), grad_logits_gpu.view(),
      grad_hidden.device.view(), grad_weight.device.view());
  CUDA_REQUIRE(cudaStreamSynchronize(stream));
  CHECK(workspace.live() == 0);
  return std::max(grad_hidden.error(), grad_weight.error());
}

/// `status` refuses a backward with 16-bit parameters, naming the component and f32.
void check_refused_16_bit(const sdk::Status& status, const char* component) {
  INFO(status.message);
  CHECK(status.code == sdk::StatusCode::kInvalidArgument);
  CHECK_THAT(status.message, Catch::Contains(component) && Catch::Contains("f32"));
}
}  // namespace

TEST_CASE("mixer/s6 and head/lm run on CUDA and refuse 16-bit backward there without touching memory", "[cuda]") {
  // No GPU needed: the plugins answer before any CUDA call. The views point at host memory
  // labelled as CUDA memory, which a correct plugin never dereferences here.
  const auto& host = mambakit::test::in_tree_plugins();
  auto mixer = host.create_mixer("s6", kSmallBias);
  sdk::MixerCapabilities mixer_capabilities;
  mixer->capabilities(&mixer_capabilities);
  CHECK((mixer_capabilities.devices & sdk::device_bit(sdk::DeviceType::kCuda)) != 0);
  CHECK((mixer_capabilities.devices & sdk::device_bit(sdk::DeviceType::kCpu)) != 0);
  CHECK(mixer_capabilities.step);
  CHECK(mixer_capabilities.backward);
  auto head = host.create_head("lm", R"({"d_model": 16, "vocab_size": 50})");
  sdk::HeadCapabilities head_capabilities;
  head->capabilities(&head_capabilities);
  CHECK((head_capabilities.devices & sdk::device_bit(sdk::DeviceType::kCuda)) != 0);
  CHECK((head_capabilities.devices & sdk::device_bit(sdk::DeviceType::kCpu)) != 0);
  CHECK(head_capabilities.backward);

  static float fake[4] = {1.f, 2.f, 3.f, 4.f};
  auto view = [](std::initializer_list<std::int64_t> shape, sdk::DType dtype = sdk::DType::kF32) {
    return sdk::make_view(fake, dtype, kGpu, shape);
  };
  for (const sdk::DType dtype : {sdk::DType::kF16, sdk::DType::kBF16}) {
    INFO(sdk::dtype_name(dtype) << " parameters");
    std::vector<sdk::TensorView> params;
    for (std::int32_t i = 0; i < mixer->param_count(); ++i) {
      sdk::ParamSpec spec;
      check_status(mixer->param_spec(i, &spec));
      params.push_back(sdk::make_view(fake, dtype, kGpu, spec.tensor.shape, spec.tensor.rank));
    }
    DeviceWorkspace workspace;  // never asked for memory here
    sdk::Context context;
    context.device = kGpu;
    context.workspace = &workspace;
    const std::int64_t B = 1, L = 2, D = 16;
    std::vector<sdk::TensorView> saved;
    for (std::int32_t i = 0; i < mixer->saved_count(); ++i) {
      sdk::TensorSpec spec;
      check_status(mixer->saved_spec(i, B, L, &spec));
      saved.push_back(sdk::make_view(fake, sdk::DType::kF32, kGpu, spec.shape, spec.rank));
    }
    std::vector<sdk::TensorView> grad_params = params;
    sdk::MixerBackwardArgs backward;
    backward.params = params.data();
    backward.x = view({B, L, D});
    backward.saved = saved.data();
    backward.grad_y = view({B, L, D});
    backward.grad_x = view({B, L, D});
    backward.grad_params = grad_params.data();
    check_refused_16_bit(mixer->backward(context, backward), "mixer/s6");

    const sdk::TensorView weight = view({50, D}, dtype);
    sdk::HeadBackwardArgs head_backward_args;
    head_backward_args.params = &weight;
    head_backward_args.hidden = view({B, L, D});
    head_backward_args.grad_output = view({B, L, 50});
    head_backward_args.grad_hidden = view({B, L, D});
    head_backward_args.grad_params = &weight;
    check_refused_16_bit(head->backward(context, head_backward_args), "head/lm");
    CHECK(workspace.live() == 0);
  }
  CHECK(fake[0] == 1.f);
  CHECK(fake[3] == 4.f);
}

TEST_CASE("mixer/s6 and head/lm report a CUDA error as a device-error Status", "[cuda]") {
  // A device ordinal no machine has: the call fails in the runtime, with or without a GPU,
  // before any memory is touched.
  const sdk::Device missing{sdk::DeviceType::kCuda, 4096};
  const auto& host = mambakit::test::in_tree_plugins();
  auto mixer = host.create_mixer("s6", kSmallBias);
  auto head = host.create_head("lm", R"({"d_model": 16, "vocab_size": 50})");
  static float fake[1];
  auto view = [&](std::initializer_list<std::int64_t> shape) {
    return sdk::make_view(fake, sdk::DType::kF32, missing, shape);
  };
  std::vector<sdk::TensorView> params;
  for (std::int32_t i = 0; i < mixer->param_count(); ++i) {
    sdk::ParamSpec spec;
    check_status(mixer->param_spec(i, &spec));
    params.push_back(sdk::make_view(fake, sdk::DType::kF32, missing, spec.tensor.shape, spec.tensor.rank));
  }
  DeviceWorkspace workspace;
  sdk::Context context;
  context.device = missing;
  context.workspace = &workspace;
  context.kernels = mambakit::test::fixed_kernels(scan("cuda").get());
  const std::int64_t B = 1, D = 16, E = 32;
  const std::vector<sdk::TensorView> state = {view({B, E, 4}), view({B, E, 4})};
  sdk::MixerStepArgs step;
  step.params = params.data();
  step.x = view({B, D});
  step.y = view({B, D});
  step.state = state.data();
  const sdk::Status step_status = mixer->step(context, step);
  INFO(step_status.message);
  CHECK(step_status.code == sdk::StatusCode::kDeviceError);
  CHECK_THAT(step_status.message, Catch::Contains("mixer/s6"));

  sdk::MixerForwardArgs forward;
  forward.params = params.data();
  forward.x = view({B, 3, D});
  forward.y = view({B, 3, D});
  const sdk::Status forward_status = mixer->forward(context, forward);
  INFO(forward_status.message);
  CHECK(forward_status.code == sdk::StatusCode::kDeviceError);

  const sdk::TensorView weight = view({50, D});
  sdk::HeadForwardArgs head_args;
  head_args.params = &weight;
  head_args.hidden = view({B, 1, D});
  head_args.output = view({B, 1, 50});
  const sdk::Status head_status = head->forward(context, head_args);
  INFO(head_status.message);
  CHECK(head_status.code == sdk::StatusCode::kDeviceError);
  CHECK_THAT(head_status.message, Catch::Contains("head/lm"));
  CHECK(workspace.live() == 0);
}

TEST_CASE("mixer/s6 forward on CUDA matches the CPU, small configs", "[cuda]") {
  require_cuda_device();
  check_forward_config(kSmallBias, {1, 2, 3, 7, 64, 1000}, 100u);
  check_forward_config(kSmallConv3, {1, 2, 3, 7, 64, 1000}, 200u);
}

TEST_CASE("mixer/s6 forward on CUDA matches the CPU, 130m shape", "[cuda]") {
  require_cuda_device();
  check_forward_config(k130m, {1, 2, 3, 7, 64, 1000}, 300u);
}

TEST_CASE("mixer/s6 step on CUDA matches the CPU step, position by position", "[cuda]") {
  require_cuda_device();
  const TestStream stream;
  std::uint32_t seed = 400;
  for (const char* config : {kSmallBias, kSmallConv3, k130m}) {
    WorstErrors worst;
    for (const sdk::DType dtype : kParamDTypes) {
      S6Case c(config, dtype, seed++);
      for (const std::int64_t batch : {1, 3}) {
        for (const bool given : {false, true}) check_step(c, config, dtype, batch, given, 20, seed++, stream, worst);
      }
    }
    // More rows than one few-rows kernel launch takes (16): the rows are split in groups.
    S6Case c(config, sdk::DType::kBF16, seed++);
    check_step(c, config, sdk::DType::kBF16, 19, true, 3, seed++, stream, worst);
    worst.print(config);
  }
}

TEST_CASE("mixer/s6 backward on CUDA matches the CPU backward, small configs", "[cuda]") {
  require_cuda_device();
  check_backward_config(kSmallBias, 500u);
  check_backward_config(kSmallConv3, 600u);
}

TEST_CASE("mixer/s6 backward on CUDA matches the CPU backward, 130m shape", "[cuda]") {
  require_cuda_device();
  const TestStream stream;
  WorstErrors worst;
  S6Case c(k130m, sdk::DType::kF32, 650u);
  check_backward(c, k130m, 2, 64, {true, true}, 651u, stream, worst);
  check_backward(c, k130m, 1, 3, {true, true}, 652u, stream, worst);
  worst.print(std::string(k130m) + ", backward (what it added)");
}

TEST_CASE("head/lm on CUDA matches the CPU, few rows and many, tied and untied", "[cuda]") {
  require_cuda_device();
  const TestStream stream;
  struct Shape {
    std::int64_t d_model, vocab;
  };
  // d_model 64: the few-rows kernel's 16-byte loads; 36: f32 loads, scalar 16-bit; 30: scalar.
  const Shape shapes[] = {{64, 1000}, {36, 515}, {30, 77}, {768, 50280}};
  struct Rows {
    std::int64_t batch, length;
  };
  // Up to 16 rows take the few-rows kernel, more take cuBLAS.
  const Rows row_sets[] = {{1, 1}, {3, 1}, {16, 1}, {2, 8}, {17, 1}, {2, 40}};
  std::uint32_t seed = 700;
  WorstErrors worst;
  for (const Shape& s : shapes) {
    for (const sdk::DType dtype : kParamDTypes) {
      for (const bool tied : {true, false}) {
        if (s.d_model == 768 && (dtype == sdk::DType::kF16 || !tied)) continue;  // the 130m head: tied, f32 and bf16
        HeadCase h(s.d_model, s.vocab, tied, dtype, seed++);
        for (const Rows& r : row_sets) {
          INFO("head/lm D=" << s.d_model << " V=" << s.vocab << " " << sdk::dtype_name(dtype)
                            << (tied ? " tied" : " untied") << " B=" << r.batch << " L=" << r.length);
          worst.note("logits", check_head(h, r.batch, r.length, s.d_model, s.vocab, seed++, stream));
        }
      }
    }
  }
  worst.print("head/lm");
}

TEST_CASE("head/lm backward on CUDA matches the CPU backward, accumulating", "[cuda]") {
  require_cuda_device();
  const TestStream stream;
  struct Case {
    std::int64_t d_model, vocab, batch, length;
  };
  const Case cases[] = {{64, 1000, 1, 1}, {36, 515, 2, 40}, {30, 77, 3, 7}, {768, 50280, 2, 8}};
  std::uint32_t seed = 800;
  WorstErrors worst;
  for (const Case& k : cases) {
    HeadCase h(k.d_model, k.vocab, true, sdk::DType::kF32, seed++);
    const std::pair<bool, bool> outputs[] = {{true, true}, {true, false}, {false, true}};
    for (const auto& [with_hidden, with_weight] : outputs) {
      INFO("head/lm backward D=" << k.d_model << " V=" << k.vocab << " B=" << k.batch << " L=" << k.length
                                 << (with_hidden ? " grad_hidden" : "") << (with_weight ? " grad_W" : ""));
      worst.note("grad_hidden and grad_W",
                 check_head_backward(h, k.batch, k.length, k.d_model, k.vocab, with_hidden, with_weight, seed++, stream));
    }
  }
  worst.print("head/lm backward (what it added)");
}

TEST_CASE("a mixer/s6 step and a head/lm forward captured in a CUDA graph replay the CPU decode", "[cuda]") {
  require_cuda_device();
  const std::int64_t B = 3, V = 300, tokens = 8;
  for (const sdk::DType dtype : kParamDTypes) {
    INFO(sdk::dtype_name(dtype));
    S6Case c(kSmallBias, dtype, 900u + static_cast<unsigned>(dtype));
    HeadCase h(c.d_model, V, true, dtype, 950u + static_cast<unsigned>(dtype));
    const std::int64_t D = c.d_model;
    std::mt19937 rng(990u);
    std::vector<HostTensor> state = initial_state(c, B, true, rng);
    DeviceTensor conv(state[0]), ssm(state[1]);
    const std::vector<sdk::TensorView> cpu_state = {state[0].view(), state[1].view()};
    const std::vector<sdk::TensorView> gpu_state = {conv.view(), ssm.view()};
    DeviceTensor x_gpu({B, D}), y_gpu({B, D}), logits_gpu({B, 1, V});
    const TestStream stream;
    ArenaWorkspace arena(std::size_t{16} << 20);
    const sdk::Context context = gpu_context(arena, stream);

    sdk::MixerStepArgs step;
    step.params = c.device_views.data();
    step.x = x_gpu.view();
    step.y = y_gpu.view();
    step.state = gpu_state.data();
    sdk::HeadForwardArgs logits;
    logits.params = &h.device_view;
    logits.hidden = y_gpu.view({B, 1, D});
    logits.output = logits_gpu.view();

    cudaGraph_t graph = nullptr;
    CUDA_REQUIRE(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
    const sdk::Status step_status = c.mixer->step(context, step);
    const sdk::Status head_status = h.head->forward(context, logits);
    const cudaError_t capture = cudaStreamEndCapture(stream, &graph);
    check_status(step_status);
    check_status(head_status);
    CUDA_REQUIRE(capture);
    cudaGraphExec_t exec = nullptr;
    CUDA_REQUIRE(cudaGraphInstantiate(&exec, graph, 0));

    TestWorkspace cpu_workspace;
    for (std::int64_t t = 0; t < tokens; ++t) {
      INFO("token " << t);
      HostTensor x({B, D}, sdk::DType::kF32, random_values(B * D, -1.0, 1.0, rng));
      HostTensor y({B, D}, sdk::DType::kF32, std::vector<float>(static_cast<std::size_t>(B * D), 0.f));
      HostTensor expected({B, 1, V}, sdk::DType::kF32, std::vector<float>(static_cast<std::size_t>(B * V), 0.f));
      sdk::MixerStepArgs cpu;
      cpu.params = c.host_views.data();
      cpu.x = x.view();
      cpu.y = y.view();
      cpu.state = cpu_state.data();
      check_status(c.mixer->step(cpu_context(cpu_workspace), cpu));
      sdk::HeadForwardArgs cpu_logits;
      cpu_logits.params = &h.host_view;
      cpu_logits.hidden = sdk::make_view(y.values().data(), {B, 1, D});
      cpu_logits.output = expected.view();
      check_status(h.head->forward(cpu_context(cpu_workspace), cpu_logits));

      x_gpu.write(x.values(), stream);
      CUDA_REQUIRE(cudaGraphLaunch(exec, stream));
      CUDA_REQUIRE(cudaStreamSynchronize(stream));
      CHECK(relative_to_max(y_gpu.read(), y.values()) <= kTolerance);
      CHECK(relative_to_max(logits_gpu.read(), expected.values()) <= kTolerance);
    }
    CHECK(relative_to_max(conv.read(), state[0].values()) <= kTolerance);
    CHECK(relative_to_max(ssm.read(), state[1].values()) <= kTolerance);
    CUDA_REQUIRE(cudaGraphExecDestroy(exec));
    CUDA_REQUIRE(cudaGraphDestroy(graph));
  }
}
