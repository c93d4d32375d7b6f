// scan/cuda backward: the gradients of the selective scan by recomputation within chunks.
// The state at the start of every chunk comes from the forward kernel's chunk-states pass; this
// kernel walks the chunks last to first with one thread block per (batch row, kChannels
// channels), and for every state index n and channel:
//   1. recomputes h_{t-1} for the chunk's steps with a cub::BlockScan (exclusive) over the
//      pairs (a_t, dt_t B_t u_t), a_t = exp(dt_t A[e, n]), seeded with the stored chunk state;
//   2. runs the adjoint backwards in time with a block reverse scan: with c_t = gy0_t C_t (gy0
//      the gradient of the ungated output), p_t = a_t (c_t + p_{t+1}) is the gradient reaching
//      h_{t-1}, carried from chunk to chunk and started from grad_final_state; the gradient of
//      h_t is g_t = c_t + p_{t+1}, and p before the first step is grad_initial_state;
//   3. accumulates g_t into the gradients of dt, u, A and B, and gy0_t h_t into that of C.
// The state is never written to global memory. grad_B and grad_C (shared by all channels) and
// grad_A, grad_D, grad_delta_bias (shared by all rows and steps) are summed within the block,
// then added with atomicAdd. Every gradient output accumulates (+=).
//
// Dimensions: B batch, L length, E d_inner, N d_state.

#include <cub/block/block_scan.cuh>

#include <cstdint>

#include "cuda_scan_device.cuh"
#include "cuda_scan_launch.hpp"

namespace mambakit::scan_cuda {

namespace {

/// grid (ceil(E / kChannels), B), kThreads threads (the same chunks as the forward for L).
/// Reads  forward inputs u, delta, z (B, L, E); A (E, N); B, C (B, L, N); D, delta_bias (E);
///        chunk_states (B, E, n_chunks, N); grad_y (B, L, E); grad_final_state (B, E, N).
/// Adds   grad_u, grad_delta, grad_z (B, L, E); grad_B, grad_C (B, L, N) f32 (atomic);
///        grad_A (E, N), grad_D, grad_delta_bias (E) (atomic); grad_initial_state (B, E, N).
template <class T, int kThreads>
__global__ __launch_bounds__(kThreads) void scan_backward_kernel(BackwardParams p) {
  constexpr int kChunk = kThreads * kItems;
  using BlockScan = cub::BlockScan<float2, kThreads, cub::BLOCK_SCAN_WARP_SCANS>;
  using ReverseScan = BlockReverseScan<kThreads>;
  __shared__ typename BlockScan::TempStorage scan_storage;
  __shared__ typename ReverseScan::TempStorage reverse_storage;
  __shared__ float2 carry[kChannels][kMaxDState];  // adjoint state (1, p) of (channel, n) between chunks
  __shared__ float A_block[kChannels][kMaxDState];
  __shared__ float grad_A_block[kChannels][kMaxDState];
  __shared__ float grad_D_block[kChannels];
  __shared__ float grad_bias_block[kChannels];

  const ForwardParams& f = p.forward;
  const std::int64_t L = f.shape.length, E = f.shape.d_inner;
  const int N = static_cast<int>(f.shape.d_state);
  const std::int64_t b = blockIdx.y;
  const std::int64_t e0 = static_cast<std::int64_t>(blockIdx.x) * kChannels;
  const int channels = static_cast<int>(E - e0 < kChannels ? E - e0 : kChannels);
  const std::int64_t n_chunks = (L + kChunk - 1) / kChunk;
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const bool has_z = f.z.data != nullptr;

  for (int k = static_cast<int>(threadIdx.x); k < channels * N; k += kThreads) {
    const int g = k / N, n = k % N;
    A_block[g][n] = *at<const float>(f.A, e0 + g, n);
    const float grad_end =
        p.grad_final_state.data != nullptr ? *at<const float>(p.grad_final_state, b, e0 + g, n) : 0.f;
    carry[g][n] = make_float2(1.f, grad_end);
    grad_A_block[g][n] = 0.f;
  }
  if (threadIdx.x < kChannels) {
    grad_D_block[threadIdx.x] = 0.f;
    grad_bias_block[threadIdx.x] = 0.f;
  }
  float D_value[kChannels], bias[kChannels], grad_D_part[kChannels], grad_bias_part[kChannels];
  load_channel_params(f, e0, channels, D_value, bias);
  for (int g = 0; g < kChannels; ++g) {
    grad_D_part[g] = 0.f;
    grad_bias_part[g] = 0.f;
  }

  for (std::int64_t chunk = n_chunks - 1; chunk >= 0; --chunk) {
    __syncthreads();  // shared state of the previous chunk (and the set-up) is seen
    const std::int64_t t0 = chunk * kChunk + static_cast<std::int64_t>(threadIdx.x) * kItems;
    // Steps past L and channels past E also get gy0 = 0.
    float u[kChannels][kItems], dt[kChannels][kItems], gy0[kChannels][kItems];
    float grad_dt[kChannels][kItems], grad_u[kChannels][kItems], y0[kChannels][kItems];
    load_chunk_inputs<T>(f, b, t0, e0, channels, bias, u, dt);
#pragma unroll
    for (int g = 0; g < kChannels; ++g) {
#pragma unroll
      for (int i = 0; i < kItems; ++i) {
        const std::int64_t t = t0 + i;
        const bool valid = t < L && g < channels;
        float gy = valid ? load<T>(p.grad_y, b, t, e0 + g) : 0.f;
        if (has_z && valid) {
          const float z = load<T>(f.z, b, t, e0 + g);
          gy *= z * sigmoid(z);
        }
        gy0[g][i] = gy;
        grad_dt[g][i] = 0.f;
        grad_u[g][i] = 0.f;
        y0[g][i] = D_value[g] * u[g][i];
      }
    }
    for (int n = 0; n < N; ++n) {
      float B_value[kItems], C_value[kItems], grad_B_part[kItems], grad_C_part[kItems];
#pragma unroll
      for (int i = 0; i < kItems; ++i) {
        const std::int64_t t = t0 + i;
        B_value[i] = t < L ? load<T>(f.B, b, t, n) : 0.f;
        C_value[i] = t < L ? load<T>(f.C, b, t, n) : 0.f;
        grad_B_part[i] = 0.f;
        grad_C_part[i] = 0.f;
      }
#pragma unroll
      for (int g = 0; g < kChannels; ++g) {
        if (g >= channels) break;  // the same for the whole block
        const float A_value = A_block[g][n];
        float a[kItems], h_before[kItems];
        float2 pairs[kItems], adjoint[kItems], later[kItems];
#pragma unroll
        for (int i = 0; i < kItems; ++i) {
          a[i] = expf(dt[g][i] * A_value);
          pairs[i] = make_float2(a[i], dt[g][i] * B_value[i] * u[g][i]);
        }
        const float h_start = p.chunk_states[(((b * E + e0 + g) * n_chunks) + chunk) * N + n];
        RunningPrefix prefix(make_float2(1.f, h_start));
        float2 before[kItems];
        BlockScan(scan_storage).ExclusiveScan(pairs, before, PairCombine{}, prefix);
#pragma unroll
        for (int i = 0; i < kItems; ++i) {
          h_before[i] = before[i].y;
          const float h = a[i] * h_before[i] + pairs[i].y;
          y0[g][i] += h * C_value[i];
          grad_C_part[i] += gy0[g][i] * h;
          const float c = gy0[g][i] * C_value[i];
          adjoint[i] = make_float2(a[i], a[i] * c);
        }
        float2 carry_gn = carry[g][n];
        ReverseScan::exclusive(adjoint, later, carry_gn, reverse_storage);
        if (threadIdx.x == 0) carry[g][n] = carry_gn;
        float grad_A_part = 0.f;
#pragma unroll
        for (int i = 0; i < kItems; ++i) {
          const float grad_h = gy0[g][i] * C_value[i] + later[i].y;
          const float grad_h_dt = grad_h * dt[g][i];
          grad_dt[g][i] += grad_h * (A_value * a[i] * h_before[i] + B_value[i] * u[g][i]);
          grad_A_part += grad_h_dt * a[i] * h_before[i];
          grad_B_part[i] += grad_h_dt * u[g][i];
          grad_u[g][i] += grad_h_dt * B_value[i];
        }
        if (p.grad_A.data != nullptr) {
          grad_A_part = warp_sum(grad_A_part);
          if (lane == 0) atomicAdd(&grad_A_block[g][n], grad_A_part);
        }
      }
#pragma unroll
      for (int i = 0; i < kItems; ++i) {
        const std::int64_t t = t0 + i;
        if (t >= L) continue;
        if (p.grad_B.data != nullptr) atomicAdd(at<float>(p.grad_B, b, t, n), grad_B_part[i]);
        if (p.grad_C.data != nullptr) atomicAdd(at<float>(p.grad_C, b, t, n), grad_C_part[i]);
      }
    }
#pragma unroll
    for (int g = 0; g < kChannels; ++g) {
#pragma unroll
      for (int i = 0; i < kItems; ++i) {
        const std::int64_t t = t0 + i;
        if (t >= L || g >= channels) continue;
        const std::int64_t e = e0 + g;
        if (p.grad_u.data != nullptr) add_to<T>(p.grad_u, b, t, e, grad_u[g][i] + D_value[g] * gy0[g][i]);
        const float raw = load<T>(f.delta, b, t, e) + bias[g];
        const float grad_raw = f.delta_softplus && raw <= 20.f ? grad_dt[g][i] * sigmoid(raw) : grad_dt[g][i];
        if (p.grad_delta.data != nullptr) add_to<T>(p.grad_delta, b, t, e, grad_raw);
        grad_bias_part[g] += grad_raw;
        grad_D_part[g] += gy0[g][i] * u[g][i];
        if (has_z && p.grad_z.data != nullptr) {
          const float z = load<T>(f.z, b, t, e);
          const float s = sigmoid(z);
          add_to<T>(p.grad_z, b, t, e, load<T>(p.grad_y, b, t, e) * y0[g][i] * s * (1.f + z * (1.f - s)));
        }
      }
    }
  }

  for (int g = 0; g < kChannels; ++g) {
    const float grad_D_sum = warp_sum(grad_D_part[g]);
    const float grad_bias_sum = warp_sum(grad_bias_part[g]);
    if (lane == 0 && g < channels) {
      atomicAdd(&grad_D_block[g], grad_D_sum);
      atomicAdd(&grad_bias_block[g], grad_bias_sum);
    }
  }
  __syncthreads();
  for (int k = static_cast<int>(threadIdx.x); k < channels * N; k += kThreads) {
    const int g = k / N, n = k % N;
    if (p.grad_A.data != nullptr) atomicAdd(at<float>(p.grad_A, e0 + g, n), grad_A_block[g][n]);
    if (p.grad_initial_state.data != nullptr) *at<float>(p.grad_initial_state, b, e0 + g, n) += carry[g][n].y;
  }
  if (static_cast<int>(threadIdx.x) < channels) {
    if (p.grad_D.data != nullptr) atomicAdd(static_cast<float*>(p.grad_D.data) + e0 + threadIdx.x, grad_D_block[threadIdx.x]);
    if (p.grad_delta_bias.data != nullptr) {
      atomicAdd(static_cast<float*>(p.grad_delta_bias.data) + e0 + threadIdx.x, grad_bias_block[threadIdx.x]);
    }
  }
}

/// grid-stride over B * L * N. Reads accumulator (B, L, N) f32 contiguous; adds into grad
/// (B, L, N) of type T.
template <class T>
__global__ void add_accumulator_kernel(DeviceView grad, const float* accumulator, ScanShape shape) {
  const std::int64_t count = shape.batch * shape.length * shape.d_state;
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t k = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < count; k += stride) {
    const std::int64_t n = k % shape.d_state;
    const std::int64_t t = (k / shape.d_state) % shape.length;
    const std::int64_t b = k / (shape.d_state * shape.length);
    add_to<T>(grad, b, t, n, accumulator[k]);
  }
}

template <class T>
cudaError_t launch_backward_typed(const BackwardParams& params, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>((params.forward.shape.d_inner + kChannels - 1) / kChannels),
                  static_cast<unsigned>(params.forward.shape.batch));
  if (params.forward.shape.length <= kShortLength) {
    scan_backward_kernel<T, kShortThreads><<<grid, kShortThreads, 0, stream>>>(params);
  } else {
    scan_backward_kernel<T, kLongThreads><<<grid, kLongThreads, 0, stream>>>(params);
  }
  return cudaGetLastError();
}

template <class T>
cudaError_t launch_add_typed(DeviceView grad, const float* accumulator, const ScanShape& shape, cudaStream_t stream) {
  constexpr int kThreads = 256;
  const std::int64_t count = shape.batch * shape.length * shape.d_state;
  const std::int64_t blocks = (count + kThreads - 1) / kThreads;
  const unsigned grid = static_cast<unsigned>(blocks < 65536 ? blocks : 65536);
  add_accumulator_kernel<T><<<grid, kThreads, 0, stream>>>(grad, accumulator, shape);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_backward(const BackwardParams& params, cudaStream_t stream) noexcept {
  switch (params.forward.dtype) {
    case sdk::DType::kF32: return launch_backward_typed<float>(params, stream);
    case sdk::DType::kF16: return launch_backward_typed<__half>(params, stream);
    case sdk::DType::kBF16: return launch_backward_typed<__nv_bfloat16>(params, stream);
    default: return cudaErrorInvalidValue;
  }
}

cudaError_t launch_add_accumulator(DeviceView grad, sdk::DType dtype, const float* accumulator,
                                   const ScanShape& shape, cudaStream_t stream) noexcept {
  switch (dtype) {
    case sdk::DType::kF32: return launch_add_typed<float>(grad, accumulator, shape, stream);
    case sdk::DType::kF16: return launch_add_typed<__half>(grad, accumulator, shape, stream);
    case sdk::DType::kBF16: return launch_add_typed<__nv_bfloat16>(grad, accumulator, shape, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace mambakit::scan_cuda
