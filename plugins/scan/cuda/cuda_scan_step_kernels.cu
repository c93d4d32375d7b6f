// scan/cuda step: one token of the selective scan (decode), the state updated in place. One
// thread per (batch row, channel) walks the N state entries:
//   dt = softplus(delta + delta_bias), h[n] = exp(dt A[e, n]) h[n] + dt B[n] u,
//   y = (sum_n h[n] C[n] + D[e] u) * silu(z).
//
// Dimensions: B batch, E d_inner, N d_state.

#include <cstdint>

#include "cuda_scan_device.cuh"
#include "cuda_scan_launch.hpp"

namespace mambakit::scan_cuda {

namespace {

/// grid ceil(B * E / kThreads), kThreads threads.
/// Reads  u, delta, z (B, E); A (E, N); B, C (B, N); D, delta_bias (E).
/// Updates state (B, E, N) f32 in place; writes y (B, E).
template <class T>
__global__ void scan_step_kernel(StepParams p) {
  const std::int64_t k = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= p.batch * p.d_inner) return;
  const std::int64_t b = k / p.d_inner, e = k % p.d_inner;
  const float x = load<T>(p.u, b, e);
  const float dt = step_size(load<T>(p.delta, b, e) + load_or(p.delta_bias, e, 0.f), p.delta_softplus);
  float out = load_or(p.D, e, 0.f) * x;
  for (std::int64_t n = 0; n < p.d_state; ++n) {
    float* h = at<float>(p.state, b, e, n);
    const float next = expf(dt * *at<const float>(p.A, e, n)) * *h + dt * load<T>(p.B, b, n) * x;
    *h = next;
    out += next * load<T>(p.C, b, n);
  }
  if (p.z.data != nullptr) {
    const float z = load<T>(p.z, b, e);
    out *= z * sigmoid(z);
  }
  *at<T>(p.y, b, e) = from_float<T>(out);
}

template <class T>
cudaError_t launch_step_typed(const StepParams& params, cudaStream_t stream) {
  constexpr int kThreads = 128;
  const std::int64_t blocks = (params.batch * params.d_inner + kThreads - 1) / kThreads;
  scan_step_kernel<T><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(params);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_step(const StepParams& params, cudaStream_t stream) noexcept {
  switch (params.dtype) {
    case sdk::DType::kF32: return launch_step_typed<float>(params, stream);
    case sdk::DType::kF16: return launch_step_typed<__half>(params, stream);
    case sdk::DType::kBF16: return launch_step_typed<__nv_bfloat16>(params, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace mambakit::scan_cuda
