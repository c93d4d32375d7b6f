// scan/cuda: the selective scan on an NVIDIA GPU (kernels in *_kernels.cu), forward, backward
// and step, for f32, f16 and bf16 problems (states, A, D and delta_bias in f32). It runs only on
// CUDA tensors, so `auto` never picks it for the CPU. The CUDA runtime is linked statically: the
// plugin loads on machines without a GPU or driver, where its calls fail with a Status.
//
// Every call runs on context.device and enqueues its work on context.stream without waiting
// for it. The workspace (chunk states, f32 gradient accumulators) is handed back to the host
// before the call returns, with that work still queued: the host's device allocator must be
// stream-ordered (as cudaFreeAsync, cudaFree and caching allocators on one stream are).

#include <cuda_runtime_api.h>

#include <cstdint>
#include <utility>

#include "cuda_scan_launch.hpp"
#include "mambakit/sdk/util/cuda_status.hpp"
#include "mambakit/sdk/plugin.hpp"
#include "mambakit/sdk/scan_backend.hpp"
#include "mambakit/sdk/workspace.hpp"

namespace mambakit::scan_cuda {

namespace {

constexpr const char* kComponent = "scan/cuda";

constexpr std::uint32_t kDTypes =
    sdk::dtype_bit(sdk::DType::kF32) | sdk::dtype_bit(sdk::DType::kF16) | sdk::dtype_bit(sdk::DType::kBF16);

using sdk::cuda::stream_of;

/// Runs `body` (returning Status) with context.device current (see sdk::cuda::on_device).
template <class Body>
sdk::Status on_device(const sdk::Context& context, Body&& body) noexcept {
  return sdk::cuda::on_device(kComponent, context, std::forward<Body>(body));
}

sdk::Status check_batch(std::int64_t batch) noexcept {
  if (batch > kMaxBatch) {
    return sdk::Status::error(sdk::StatusCode::kUnsupported, "scan/cuda: batch %lld exceeds the largest supported, %lld",
                              static_cast<long long>(batch), static_cast<long long>(kMaxBatch));
  }
  return sdk::Status::success();
}

/// The inputs and the output y that forward and step share, from `args` (ScanForwardArgs or
/// ScanStepArgs) into `params` (ForwardParams or StepParams).
template <class Params, class Args>
void set_common_params(Params& params, const Args& args) noexcept {
  params.dtype = args.u.dtype;
  params.u = device_view(args.u);
  params.delta = device_view(args.delta);
  params.A = device_view(args.A);
  params.B = device_view(args.B);
  params.C = device_view(args.C);
  params.D = device_view(args.D);
  params.z = device_view(args.z);
  params.delta_bias = device_view(args.delta_bias);
  params.y = device_view(args.y);
  params.delta_softplus = args.delta_softplus;
}

ForwardParams forward_params(const sdk::ScanForwardArgs& args) noexcept {
  ForwardParams params;
  params.shape = {args.u.shape[0], args.u.shape[1], args.u.shape[2], args.A.shape[1]};
  set_common_params(params, args);
  params.initial_state = device_view(args.initial_state);
  params.final_state = device_view(args.final_state);
  return params;
}

/// A zeroed f32 (B, L, N) accumulator for grad_B or grad_C of a reduced-precision problem.
DeviceView accumulator_view(float* data, const ScanShape& shape) noexcept {
  DeviceView view;
  view.data = data;
  view.stride0 = shape.length * shape.d_state;
  view.stride1 = shape.d_state;
  return view;
}

}  // namespace

class CudaScan final : public sdk::ScanBackend {
 public:
  explicit CudaScan(const char* /*config_json*/) {}

  void capabilities(sdk::ScanCapabilities* out) const noexcept override {
    out->devices = sdk::device_bit(sdk::DeviceType::kCuda);
    out->dtypes = kDTypes;
    out->max_d_state = kMaxDState;
    out->backward = true;
    out->step = true;
  }

  /// kScore for CUDA problems it supports, 0 otherwise (every CPU problem).
  std::int32_t score(const sdk::KernelProblem& problem) const noexcept override {
    const sdk::SelectiveScanShape shape = sdk::selective_scan_shape(problem);
    if (!shape.valid) return 0;
    const bool runs = problem.device.type == sdk::DeviceType::kCuda && (kDTypes & sdk::dtype_bit(problem.dtype)) != 0 &&
                      shape.d_state <= kMaxDState && shape.batch <= kMaxBatch;
    return runs ? kScore : 0;
  }

  sdk::Status forward(const sdk::Context& context, const sdk::ScanForwardArgs& args) noexcept override {
    MAMBAKIT_RETURN_IF_ERROR(check_batch(args.u.shape[0]));
    return on_device(context, [&]() -> sdk::Status {
      MAMBAKIT_CUDA_CHECK(kComponent, launch_forward(forward_params(args), stream_of(context)));
      return sdk::Status::success();
    });
  }

  sdk::Status backward(const sdk::Context& context, const sdk::ScanBackwardArgs& args) noexcept override {
    MAMBAKIT_RETURN_IF_ERROR(check_batch(args.forward.u.shape[0]));
    return on_device(context, [&]() -> sdk::Status {
      const cudaStream_t stream = stream_of(context);
      BackwardParams params;
      params.forward = forward_params(args.forward);
      const ScanShape shape = params.forward.shape;
      const std::int64_t states = shape.batch * shape.d_inner * chunk_count(shape.length) * shape.d_state;
      sdk::WorkspaceArray<float> chunk_states(context, states);
      MAMBAKIT_CUDA_CHECK(kComponent, launch_chunk_states(params.forward, chunk_states.data(), stream));
      params.chunk_states = chunk_states.data();
      params.grad_y = device_view(args.grad_y);
      params.grad_final_state = device_view(args.grad_final_state);
      params.grad_u = device_view(args.grad_u);
      params.grad_delta = device_view(args.grad_delta);
      params.grad_A = device_view(args.grad_A);
      params.grad_D = device_view(args.grad_D);
      params.grad_z = device_view(args.grad_z);
      params.grad_delta_bias = device_view(args.grad_delta_bias);
      params.grad_initial_state = device_view(args.grad_initial_state);
      // grad_B and grad_C sum over channels with atomicAdd: directly into an f32 output, through
      // zeroed f32 accumulators for f16 and bf16.
      const bool direct = params.forward.dtype == sdk::DType::kF32;
      const std::int64_t tokens_states = shape.batch * shape.length * shape.d_state;
      sdk::WorkspaceArray<float> grad_B_sum(context, !direct && args.grad_B.present() ? tokens_states : 0);
      sdk::WorkspaceArray<float> grad_C_sum(context, !direct && args.grad_C.present() ? tokens_states : 0);
      const std::size_t sum_bytes = static_cast<std::size_t>(tokens_states) * sizeof(float);
      if (direct) {
        params.grad_B = device_view(args.grad_B);
        params.grad_C = device_view(args.grad_C);
      } else {
        if (args.grad_B.present()) {
          MAMBAKIT_CUDA_CHECK(kComponent, cudaMemsetAsync(grad_B_sum.data(), 0, sum_bytes, stream));
          params.grad_B = accumulator_view(grad_B_sum.data(), shape);
        }
        if (args.grad_C.present()) {
          MAMBAKIT_CUDA_CHECK(kComponent, cudaMemsetAsync(grad_C_sum.data(), 0, sum_bytes, stream));
          params.grad_C = accumulator_view(grad_C_sum.data(), shape);
        }
      }
      MAMBAKIT_CUDA_CHECK(kComponent, launch_backward(params, stream));
      if (!direct && args.grad_B.present()) {
        MAMBAKIT_CUDA_CHECK(kComponent, 
            launch_add_accumulator(device_view(args.grad_B), params.forward.dtype, grad_B_sum.data(), shape, stream));
      }
      if (!direct && args.grad_C.present()) {
        MAMBAKIT_CUDA_CHECK(kComponent, 
            launch_add_accumulator(device_view(args.grad_C), params.forward.dtype, grad_C_sum.data(), shape, stream));
      }
      return sdk::Status::success();
    });
  }

  sdk::Status step(const sdk::Context& context, const sdk::ScanStepArgs& args) noexcept override {
    MAMBAKIT_RETURN_IF_ERROR(check_batch(args.u.shape[0]));
    return on_device(context, [&]() -> sdk::Status {
      StepParams params;
      params.batch = args.u.shape[0];
      params.d_inner = args.u.shape[1];
      params.d_state = args.A.shape[1];
      set_common_params(params, args);
      params.state = device_view(args.state);
      MAMBAKIT_CUDA_CHECK(kComponent, launch_step(params, stream_of(context)));
      return sdk::Status::success();
    });
  }

 private:
  /// Above every CPU backend's score; only CUDA problems ever see it.
  static constexpr std::int32_t kScore = 200;
};

namespace {

sdk::Status register_components(sdk::Registrar& registrar) noexcept {
  return registrar.add_kernel(sdk::kSelectiveScanKind, "cuda",
                            "GPU scan: chunked block scans, state kept on chip, recompute in backward "
                            "(f32, f16, bf16; CUDA)",
                            &sdk::create_component<sdk::Kernel, CudaScan>);
}

}  // namespace
}  // namespace mambakit::scan_cuda

MAMBAKIT_PLUGIN("scan-cuda", "0.1.0", mambakit::scan_cuda::register_components)
