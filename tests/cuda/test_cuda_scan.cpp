// scan/cuda against scan/sequential, the oracle, on the GPU: forward outputs and final states
// over lengths 1 to 65,536, batch 1 and 3, with and without z, D, delta_bias and the initial
// state, delta_softplus on and off, with and without gaps between rows; every gradient of the
// backward; the step path position by position; f16 and bf16 inputs against the f32 oracle run
// on the same (rounded) inputs. Two cases need no GPU: the plugin's registration and scores,
// and a CUDA error reported as a Status.
//
// Without a CUDA device the GPU cases end the executable with kSkipReturnCode, which ctest
// reports as skipped (see cuda_test_support.hpp).
//
// Error measure and tolerances: relative_error() in scan_case.hpp and the rule of
// tests/scan/test_scan_conformance.cpp: 1e-5 in f32, and f32 gradients also pass within 3
// times the oracle's own error against the same problem in f64. Outputs in f16 (bf16) carry
// one rounding of 2^-11 (2^-8) of their value: 3e-3 (1.5e-2) on top.
//
// Dimensions: B batch, L length, E d_inner, N d_state.

#include <cuda_runtime_api.h>

#include <catch2/catch.hpp>
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "cuda_test_support.hpp"
#include "fixtures.hpp"
#include "mambakit/plugin_host.hpp"
#include "mambakit/sdk/scan_calls.hpp"
#include "scan_case.hpp"
#include "scan_report.hpp"

using mambakit::test::check_status;
using mambakit::test::DeviceWorkspace;
using mambakit::test::kGpu;
using mambakit::test::relative_error;
using mambakit::test::require_cuda_device;
using mambakit::test::round_to;
using mambakit::test::ScanCase;
using mambakit::test::Report;
using mambakit::test::ScanOptions;
using mambakit::test::options_from_bits;
namespace sdk = mambakit::sdk;

namespace {

/// A tensor on the GPU in f32, f16 or bf16, made from contiguous f32 values and read back as
/// such. With `gapped`, every dimension but the last has a stride larger than the extents
/// below it, the gaps filled with NaN, so that only the view's strides lead to the data. An
/// empty `values` gives an absent tensor.
class DeviceTensor {
 public:
  DeviceTensor() = default;
  DeviceTensor(const std::vector<float>& values, std::vector<std::int64_t> shape, sdk::DType dtype, bool gapped)
      : shape_(std::move(shape)), dtype_(dtype) {
    if (values.empty()) return;
    const std::size_t rank = shape_.size();
    strides_.assign(rank, 1);
    for (std::size_t d = rank - 1; d-- > 0;) {
      strides_[d] = shape_[d + 1] * strides_[d + 1] + (gapped ? 3 + 2 * static_cast<std::int64_t>(d) : 0);
    }
    const std::int64_t extent = shape_[0] * strides_[0];
    const std::size_t element = sdk::dtype_size(dtype_);
    std::vector<unsigned char> host(static_cast<std::size_t>(extent) * element);
    const float nan = std::numeric_limits<float>::quiet_NaN();
    for (std::int64_t k = 0; k < extent; ++k) store(host, k, nan);
    for_each_index([&](std::int64_t flat, std::int64_t offset) { store(host, offset, values[flat]); });
    memory_ = mambakit::test::DeviceMemory(host.size());
    CUDA_REQUIRE(cudaMemcpy(memory_.data(), host.data(), host.size(), cudaMemcpyHostToDevice));
  }

  [[nodiscard]] sdk::TensorView view() const {
    if (memory_.data() == nullptr) return sdk::TensorView{};
    sdk::TensorView v = sdk::make_view(memory_.data(), dtype_, kGpu, shape_.data(), static_cast<std::int32_t>(shape_.size()));
    for (std::size_t d = 0; d < shape_.size(); ++d) v.strides[d] = strides_[d];
    return v;
  }

  /// A (rows, cols) view starting `offset` elements in, with `row_stride` between rows.
  [[nodiscard]] sdk::TensorView slice(std::int64_t offset, std::int64_t rows, std::int64_t cols,
                                      std::int64_t row_stride) const {
    if (memory_.data() == nullptr) return sdk::TensorView{};
    void* start = static_cast<unsigned char*>(memory_.data()) + offset * static_cast<std::int64_t>(sdk::dtype_size(dtype_));
    sdk::TensorView v = sdk::make_view(start, dtype_, kGpu, {rows, cols});
    v.strides[0] = row_stride;
    return v;
  }

  /// The values, contiguous, as f32 (empty when absent).
  [[nodiscard]] std::vector<float> read() const {
    if (memory_.data() == nullptr) return {};
    std::vector<unsigned char> host(memory_.bytes());
    CUDA_REQUIRE(cudaMemcpy(host.data(), memory_.data(), memory_.bytes(), cudaMemcpyDeviceToHost));
    std::int64_t count = 1;
    for (const auto extent : shape_) count *= extent;
    std::vector<float> out(static_cast<std::size_t>(count));
    for_each_index([&](std::int64_t flat, std::int64_t offset) { out[flat] = load(host, offset); });
    return out;
  }

 private:
  void store(std::vector<unsigned char>& host, std::int64_t offset, float v) const {
    if (dtype_ == sdk::DType::kF32) {
      std::memcpy(host.data() + offset * 4, &v, 4);
    } else {
      const std::uint16_t bits = dtype_ == sdk::DType::kF16 ? sdk::f32_to_f16(v) : sdk::f32_to_bf16(v);
      std::memcpy(host.data() + offset * 2, &bits, 2);
    }
  }
  float load(const std::vector<unsigned char>& host, std::int64_t offset) const {
    if (dtype_ == sdk::DType::kF32) {
      float v;
      std::memcpy(&v, host.data() + offset * 4, 4);
      return v;
    }
    std::uint16_t bits;
    std::memcpy(&bits, host.data() + offset * 2, 2);
    return dtype_ == sdk::DType::kF16 ? sdk::f16_to_f32(bits) : sdk::bf16_to_f32(bits);
  }
  template <class F>
  void for_each_index(F&& f) const {
    std::int64_t count = 1;
    for (const auto extent : shape_) count *= extent;
    for (std::int64_t flat = 0; flat < count; ++flat) {
      std::int64_t rest = flat, offset = 0;
      for (std::size_t d = shape_.size(); d-- > 0;) {
        offset += (rest % shape_[d]) * strides_[d];
        rest /= shape_[d];
      }
      f(flat, offset);
    }
  }

  mambakit::test::DeviceMemory memory_;
  std::vector<std::int64_t> shape_;
  std::vector<std::int64_t> strides_;
  sdk::DType dtype_ = sdk::DType::kF32;
};

/// Rounds the problem-dtype inputs and upstream gradients of `p` to `dtype`, so that the f32
/// oracle and the GPU see the same numbers.
void round_inputs(ScanCase<float>& p, sdk::DType dtype) {
  for (auto* v : {&p.u, &p.delta, &p.B, &p.C, &p.z, &p.grad_y, &p.grad_u, &p.grad_delta, &p.grad_B, &p.grad_C,
                  &p.grad_z}) {
    for (auto& x : *v) x = round_to(x, dtype);
  }
}

/// A ScanCase's tensors on the GPU: the problem-dtype ones in `dtype`, the others in f32.
struct DeviceProblem {
  std::int64_t batch, length, d_inner, d_state;
  bool delta_softplus;
  DeviceTensor u, delta, A, B, C, D, z, delta_bias, initial_state, final_state, y;
  DeviceTensor grad_y, grad_final_state, grad_u, grad_delta, grad_A, grad_B, grad_C, grad_D, grad_z,
      grad_delta_bias, grad_initial_state;

  DeviceProblem(const ScanCase<float>& p, sdk::DType dtype, bool gapped)
      : batch(p.batch), length(p.length), d_inner(p.d_inner), d_state(p.d_state),
        delta_softplus(p.options.delta_softplus) {
    const std::int64_t Bt = batch, L = length, E = d_inner, N = d_state;
    const sdk::DType f32 = sdk::DType::kF32;
    u = DeviceTensor(p.u, {Bt, L, E}, dtype, gapped);
    delta = DeviceTensor(p.delta, {Bt, L, E}, dtype, gapped);
    A = DeviceTensor(p.A, {E, N}, f32, gapped);
    B = DeviceTensor(p.B, {Bt, L, N}, dtype, gapped);
    C = DeviceTensor(p.C, {Bt, L, N}, dtype, gapped);
    D = DeviceTensor(p.D, {E}, f32, false);
    z = DeviceTensor(p.z, {Bt, L, E}, dtype, gapped);
    delta_bias = DeviceTensor(p.delta_bias, {E}, f32, false);
    initial_state = DeviceTensor(p.initial_state, {Bt, E, N}, f32, gapped);
    final_state = DeviceTensor(p.final_state, {Bt, E, N}, f32, gapped);
    y = DeviceTensor(p.y, {Bt, L, E}, dtype, gapped);
    grad_y = DeviceTensor(p.grad_y, {Bt, L, E}, dtype, gapped);
    grad_final_state = DeviceTensor(p.grad_final_state, {Bt, E, N}, f32, gapped);
    grad_u = DeviceTensor(p.grad_u, {Bt, L, E}, dtype, gapped);
    grad_delta = DeviceTensor(p.grad_delta, {Bt, L, E}, dtype, gapped);
    grad_A = DeviceTensor(p.grad_A, {E, N}, f32, gapped);
    grad_B = DeviceTensor(p.grad_B, {Bt, L, N}, dtype, gapped);
    grad_C = DeviceTensor(p.grad_C, {Bt, L, N}, dtype, gapped);
    grad_D = DeviceTensor(p.grad_D, {E}, f32, false);
    grad_z = DeviceTensor(p.grad_z, {Bt, L, E}, dtype, gapped);
    grad_delta_bias = DeviceTensor(p.grad_delta_bias, {E}, f32, false);
    grad_initial_state = DeviceTensor(p.grad_initial_state, {Bt, E, N}, f32, gapped);
  }

  sdk::ScanForwardArgs forward_args() const {
    sdk::ScanForwardArgs args;
    args.u = u.view();
    args.delta = delta.view();
    args.A = A.view();
    args.B = B.view();
    args.C = C.view();
    args.D = D.view();
    args.z = z.view();
    args.delta_bias = delta_bias.view();
    args.delta_softplus = delta_softplus;
    args.initial_state = initial_state.view();
    args.final_state = final_state.view();
    args.y = y.view();
    return args;
  }

  sdk::ScanBackwardArgs backward_args() const {
    sdk::ScanBackwardArgs args;
    args.forward = forward_args();
    args.grad_y = grad_y.view();
    args.grad_final_state = grad_final_state.view();
    args.grad_u = grad_u.view();
    args.grad_delta = grad_delta.view();
    args.grad_A = grad_A.view();
    args.grad_B = grad_B.view();
    args.grad_C = grad_C.view();
    args.grad_D = grad_D.view();
    args.grad_z = grad_z.view();
    args.grad_delta_bias = grad_delta_bias.view();
    args.grad_initial_state = grad_initial_state.view();
    return args;
  }
};

/// The oracle and the backend under test, created once.
struct Backends {
  mambakit::test::ScanPtr oracle;
  mambakit::test::ScanPtr cuda;
};

Backends& backends() {
  static Backends b{mambakit::test::create_scan(mambakit::test::in_tree_plugins(), "sequential"),
                    mambakit::test::create_scan(mambakit::test::in_tree_plugins(), "cuda")};
  return b;
}

sdk::Context cpu_context(sdk::ScanBackend& scan) {
  sdk::Context context;
  context.kernels = mambakit::test::fixed_kernels(&scan);
  return context;
}

sdk::Context gpu_context(sdk::ScanBackend& scan, DeviceWorkspace& workspace) {
  sdk::Context context;
  context.device = kGpu;
  context.kernels = mambakit::test::fixed_kernels(&scan);
  context.workspace = &workspace;
  return context;
}

double tolerance(sdk::DType dtype) {
  switch (dtype) {
    case sdk::DType::kF16: return 3e-3;
    case sdk::DType::kBF16: return 1.5e-2;
    default: return 1e-5;
  }
}

std::string describe(std::int64_t batch, std::int64_t length, std::int64_t d_inner, std::int64_t d_state,
                     const ScanOptions& o, sdk::DType dtype, bool gapped) {
  return std::string(sdk::dtype_name(dtype)) + " " + mambakit::test::describe(batch, length, d_inner, d_state, o) +
         " gapped=" + (gapped ? "1" : "0");
}


/// Runs the oracle and scan/cuda on the same problem; checks y and the final state.
void check_forward(std::int64_t batch, std::int64_t length, std::int64_t d_inner, std::int64_t d_state,
                   const ScanOptions& options, std::uint32_t seed, sdk::DType dtype, bool gapped, Report& report) {
  Backends& scans = backends();
  ScanCase<float> reference(batch, length, d_inner, d_state, options, seed);
  round_inputs(reference, dtype);
  ScanCase<float> trial = reference;
  trial.fill_outputs(std::numeric_limits<float>::quiet_NaN());
  check_status(sdk::selective_scan_forward(cpu_context(*scans.oracle), reference.forward_args()));
  DeviceWorkspace workspace;
  const DeviceProblem device(trial, dtype, gapped);
  check_status(sdk::selective_scan_forward(gpu_context(*scans.cuda, workspace), device.forward_args()));
  CUDA_REQUIRE(cudaDeviceSynchronize());
  const double error_y = relative_error(device.y.read(), reference.y);
  const double error_state = relative_error(device.final_state.read(), reference.final_state);
  INFO(describe(batch, length, d_inner, d_state, options, dtype, gapped));
  CHECK(error_y <= tolerance(dtype));
  CHECK(error_state <= tolerance(dtype));
  CHECK(workspace.live() == 0);
  const std::string key = std::string(sdk::dtype_name(dtype)) + " forward ";
  report.note(key + "y", error_y);
  report.note(key + "final_state", error_state);
}

/// Runs the oracle's backward (in f32 and f64) and scan/cuda's on the same problem, with every
/// gradient starting at 0.25 (they accumulate), and checks every gradient.
void check_backward(std::int64_t batch, std::int64_t length, std::int64_t d_inner, std::int64_t d_state,
                    const ScanOptions& options, std::uint32_t seed, sdk::DType dtype, bool gapped, Report& report) {
  Backends& scans = backends();
  ScanCase<float> reference(batch, length, d_inner, d_state, options, seed);
  reference.fill_gradients(0.25f);
  round_inputs(reference, dtype);
  const ScanCase<float> trial = reference;
  ScanCase<double> exact = mambakit::test::converted<double>(reference);
  check_status(sdk::selective_scan_backward(cpu_context(*scans.oracle), reference.backward_args()));
  check_status(sdk::selective_scan_backward(cpu_context(*scans.oracle), exact.backward_args()));
  DeviceWorkspace workspace;
  const DeviceProblem device(trial, dtype, gapped);
  check_status(sdk::selective_scan_backward(gpu_context(*scans.cuda, workspace), device.backward_args()));
  CUDA_REQUIRE(cudaDeviceSynchronize());
  CHECK(workspace.live() == 0);
  const std::tuple<const char*, const DeviceTensor*, const std::vector<float>*, const std::vector<double>*> grads[] = {
      {"grad_u", &device.grad_u, &reference.grad_u, &exact.grad_u},
      {"grad_delta", &device.grad_delta, &reference.grad_delta, &exact.grad_delta},
      {"grad_A", &device.grad_A, &reference.grad_A, &exact.grad_A},
      {"grad_B", &device.grad_B, &reference.grad_B, &exact.grad_B},
      {"grad_C", &device.grad_C, &reference.grad_C, &exact.grad_C},
      {"grad_D", &device.grad_D, &reference.grad_D, &exact.grad_D},
      {"grad_z", &device.grad_z, &reference.grad_z, &exact.grad_z},
      {"grad_delta_bias", &device.grad_delta_bias, &reference.grad_delta_bias, &exact.grad_delta_bias},
      {"grad_initial_state", &device.grad_initial_state, &reference.grad_initial_state, &exact.grad_initial_state}};
  for (const auto& [name, actual, expected, truth] : grads) {
    const double error = relative_error(actual->read(), *expected);
    const double oracle_error = relative_error(*expected, *truth);
    const double allowed = dtype == sdk::DType::kF32 ? std::max(tolerance(dtype), 3.0 * oracle_error)
                                                     : tolerance(dtype) + 3.0 * oracle_error;
    INFO(name << " " << describe(batch, length, d_inner, d_state, options, dtype, gapped) << " allowed=" << allowed);
    CHECK(error <= allowed);
    report.note(std::string(sdk::dtype_name(dtype)) + " backward " + name, error);
  }
}

/// Steps scan/cuda through the sequence one token at a time (the inputs of step t are strided
/// slices of the (B, L, *) tensors) and checks y_t and the final state against the oracle's
/// forward.
void check_step(std::int64_t batch, std::int64_t length, std::int64_t d_inner, std::int64_t d_state,
                const ScanOptions& options, std::uint32_t seed, sdk::DType dtype, Report& report) {
  Backends& scans = backends();
  ScanCase<float> p(batch, length, d_inner, d_state, options, seed);
  round_inputs(p, dtype);
  ScanCase<float> trial = p;
  trial.fill_outputs(std::numeric_limits<float>::quiet_NaN());
  if (trial.initial_state.empty()) trial.initial_state.assign(static_cast<std::size_t>(batch * d_inner * d_state), 0.f);
  check_status(sdk::selective_scan_forward(cpu_context(*scans.oracle), p.forward_args()));
  const DeviceProblem device(trial, dtype, false);
  const std::int64_t E = d_inner, N = d_state, L = length;
  DeviceWorkspace workspace;
  const sdk::Context context = gpu_context(*scans.cuda, workspace);
  for (std::int64_t t = 0; t < L; ++t) {
    sdk::ScanStepArgs step;
    step.u = device.u.slice(t * E, batch, E, L * E);
    step.delta = device.delta.slice(t * E, batch, E, L * E);
    step.z = device.z.slice(t * E, batch, E, L * E);
    step.B = device.B.slice(t * N, batch, N, L * N);
    step.C = device.C.slice(t * N, batch, N, L * N);
    step.A = device.A.view();
    step.D = device.D.view();
    step.delta_bias = device.delta_bias.view();
    step.delta_softplus = options.delta_softplus;
    step.state = device.initial_state.view();
    step.y = device.y.slice(t * E, batch, E, L * E);
    check_status(sdk::selective_scan_step(context, step));
  }
  CUDA_REQUIRE(cudaDeviceSynchronize());
  const double error_y = relative_error(device.y.read(), p.y);
  const double error_state = relative_error(device.initial_state.read(), p.final_state);
  INFO("step " << describe(batch, length, d_inner, d_state, options, dtype, false));
  CHECK(error_y <= tolerance(dtype));
  CHECK(error_state <= tolerance(dtype));
  report.note(std::string(sdk::dtype_name(dtype)) + " step y", error_y);
  report.note(std::string(sdk::dtype_name(dtype)) + " step state", error_state);
}

struct Dims {
  std::int64_t d_inner, d_state;
};
// E not a multiple of the kernels' 4-channel groups, N small, odd and large.
constexpr Dims kDims[] = {{20, 5}, {16, 16}, {37, 4}, {3, 8}, {48, 16}};
constexpr unsigned kAllOptions = 31;

}  // namespace

TEST_CASE("scan/cuda is registered for CUDA tensors only, and auto picks it there", "[cuda]") {
  const auto& host = mambakit::test::in_tree_plugins();
  const auto names = mambakit::test::scan_names(host);
  REQUIRE(std::find(names.begin(), names.end(), "cuda") != names.end());
  auto scan = mambakit::test::create_scan(host, "cuda");
  sdk::ScanCapabilities capabilities;
  scan->capabilities(&capabilities);
  CHECK(capabilities.devices == sdk::device_bit(sdk::DeviceType::kCuda));
  for (const auto dtype : {sdk::DType::kF32, sdk::DType::kF16, sdk::DType::kBF16}) {
    CHECK((capabilities.dtypes & sdk::dtype_bit(dtype)) != 0);
  }
  CHECK((capabilities.dtypes & sdk::dtype_bit(sdk::DType::kF64)) == 0);
  CHECK(capabilities.backward);
  CHECK(capabilities.step);
  sdk::KernelProblem problem = sdk::selective_scan_problem(sdk::Device{}, sdk::DType::kF32, 2, 4096, 1536, 16);
  CHECK(scan->score(problem) == 0);
  CHECK(host.choose_kernel(sdk::kSelectiveScanKind, "auto", problem).name != "cuda");
  problem.device = kGpu;
  CHECK(scan->score(problem) > 0);
  CHECK(host.choose_kernel(sdk::kSelectiveScanKind, "auto", problem).name == "cuda");
  problem.dtype = sdk::DType::kBF16;
  CHECK(scan->score(problem) > 0);
  problem.dtype = sdk::DType::kF64;
  CHECK(scan->score(problem) == 0);
  problem.dtype = sdk::DType::kF32;
  problem.dims[sdk::kScanDState] = capabilities.max_d_state + 1;
  CHECK(scan->score(problem) == 0);
}

TEST_CASE("scan/cuda reports a CUDA error as a device-error Status", "[cuda]") {
  // A device ordinal no machine has: the call fails in the runtime, with or without a GPU.
  const sdk::Device missing{sdk::DeviceType::kCuda, 4096};
  auto scan = mambakit::test::create_scan(mambakit::test::in_tree_plugins(), "cuda");
  DeviceWorkspace workspace;
  sdk::Context context;
  context.device = missing;
  context.kernels = mambakit::test::fixed_kernels(scan.get());
  context.workspace = &workspace;
  // Never dereferenced: the call fails before any kernel runs.
  static float fake[1];
  auto view = [&](std::initializer_list<std::int64_t> shape) {
    return sdk::make_view(fake, sdk::DType::kF32, missing, shape);
  };
  const std::int64_t B = 1, L = 3, E = 2, N = 4;
  sdk::ScanForwardArgs forward;
  forward.u = view({B, L, E});
  forward.delta = view({B, L, E});
  forward.A = view({E, N});
  forward.B = view({B, L, N});
  forward.C = view({B, L, N});
  forward.y = view({B, L, E});
  const auto forward_status = sdk::selective_scan_forward(context, forward);
  INFO(forward_status.message);
  CHECK(forward_status.code == sdk::StatusCode::kDeviceError);
  CHECK_THAT(forward_status.message, Catch::Contains("scan/cuda"));

  sdk::ScanBackwardArgs backward;
  backward.forward = forward;
  backward.grad_y = view({B, L, E});
  backward.grad_u = view({B, L, E});
  const auto backward_status = sdk::selective_scan_backward(context, backward);
  INFO(backward_status.message);
  CHECK(backward_status.code == sdk::StatusCode::kDeviceError);
  CHECK(workspace.live() == 0);

  sdk::ScanStepArgs step;
  step.u = view({B, E});
  step.delta = view({B, E});
  step.A = view({E, N});
  step.B = view({B, N});
  step.C = view({B, N});
  step.state = view({B, E, N});
  step.y = view({B, E});
  const auto step_status = sdk::selective_scan_step(context, step);
  INFO(step_status.message);
  CHECK(step_status.code == sdk::StatusCode::kDeviceError);
}

TEST_CASE("scan/cuda forward matches scan/sequential", "[cuda]") {
  require_cuda_device();
  Report report;
  std::uint32_t index = 0;
  for (const std::int64_t length : {1, 2, 3, 7, 64, 1000, 4099}) {
    for (const std::int64_t batch : {1, 3}) {
      std::vector<unsigned> option_sets;
      if (length <= 64) {
        for (unsigned bits = 0; bits <= kAllOptions; ++bits) option_sets.push_back(bits);
      } else {
        option_sets = {kAllOptions, 0u, kAllOptions ^ 1u, kAllOptions ^ 2u, kAllOptions ^ 4u,
                       kAllOptions ^ 8u, kAllOptions ^ 16u, 16u};
      }
      for (const unsigned bits : option_sets) {
        const Dims d = kDims[index % 5];
        check_forward(batch, length, d.d_inner, d.d_state, options_from_bits(bits), 1000u + index,
                      sdk::DType::kF32, index % 2 == 1, report);
        ++index;
      }
    }
  }
  for (const std::int64_t batch : {1, 3}) {
    for (const unsigned bits : {kAllOptions, 0u}) {
      check_forward(batch, 65536, 4, 4, options_from_bits(bits), 7000u + bits, sdk::DType::kF32, false, report);
    }
  }
  // The largest d_state, and a wide problem with many channel groups.
  check_forward(2, 300, 9, 256, options_from_bits(kAllOptions), 7100u, sdk::DType::kF32, false, report);
  check_forward(2, 777, 1536, 16, options_from_bits(kAllOptions), 7101u, sdk::DType::kF32, true, report);
  report.print("scan/cuda forward");
}

TEST_CASE("scan/cuda backward matches scan/sequential in every gradient", "[cuda]") {
  require_cuda_device();
  Report report;
  struct Shape {
    std::int64_t batch, length, d_inner, d_state;
  };
  const Shape shapes[] = {{2, 7, 20, 5},     {1, 1, 3, 8},     {1, 2, 4, 4},      {3, 3, 5, 16},
                          {1, 300, 16, 16},  {3, 1000, 37, 4}, {1, 4099, 8, 8},   {2, 129, 6, 256},
                          {1, 65536, 4, 4}};
  std::uint32_t seed = 300;
  for (const Shape& s : shapes) {
    for (const unsigned bits : {kAllOptions, 0u, kAllOptions ^ 16u, kAllOptions ^ 2u, kAllOptions ^ 8u}) {
      ++seed;
      check_backward(s.batch, s.length, s.d_inner, s.d_state, options_from_bits(bits), seed, sdk::DType::kF32,
                     seed % 2 == 1, report);
    }
  }
  report.print("scan/cuda backward");
}

TEST_CASE("scan/cuda step reproduces scan/sequential's forward, position by position", "[cuda]") {
  require_cuda_device();
  Report report;
  std::uint32_t seed = 500;
  for (const unsigned bits : {kAllOptions, 0u, kAllOptions ^ 16u, kAllOptions ^ 8u}) {
    check_step(2, 9, 20, 5, options_from_bits(bits), ++seed, sdk::DType::kF32, report);
    check_step(3, 64, 16, 16, options_from_bits(bits), ++seed, sdk::DType::kF32, report);
    check_step(1, 300, 37, 40, options_from_bits(bits), ++seed, sdk::DType::kF32, report);
  }
  check_step(2, 5, 2050, 16, ScanOptions{}, ++seed, sdk::DType::kF32, report);
  report.print("scan/cuda step");
}

TEST_CASE("scan/cuda with f16 and bf16 inputs matches the f32 oracle on the same inputs", "[cuda]") {
  require_cuda_device();
  Report report;
  std::uint32_t seed = 9000;
  for (const auto dtype : {sdk::DType::kF16, sdk::DType::kBF16}) {
    for (const std::int64_t length : {1, 7, 64, 1000, 4099}) {
      for (const unsigned bits : {kAllOptions, 0u, kAllOptions ^ 16u}) {
        const Dims d = kDims[seed % 5];
        const std::int64_t batch = length % 2 == 0 ? 1 : 3;
        const bool gapped = seed % 2 == 0;
        check_forward(batch, length, d.d_inner, d.d_state, options_from_bits(bits), seed + 1, dtype, gapped, report);
        check_backward(batch, length, d.d_inner, d.d_state, options_from_bits(bits), seed + 2, dtype, !gapped, report);
        seed += 2;
      }
    }
    check_step(2, 33, 20, 5, ScanOptions{}, ++seed, dtype, report);
  }
  report.print("scan/cuda f16 and bf16");
}
