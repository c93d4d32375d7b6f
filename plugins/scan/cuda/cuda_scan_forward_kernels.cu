// scan/cuda forward: the selective scan of Mamba-1 (Gu & Dao 2023, Algorithm 2) with the state
// never written to global memory, after the design of the official kernel (state-spaces/mamba,
// csrc/selective_scan). One thread block per (batch row, group of kChannels channels) walks the
// sequence in chunks of threads * kItems steps; within a chunk the threads hold consecutive
// steps, and for every channel and state index n a cub::BlockScan over the pairs
// (exp(dt_t A[e, n]), dt_t B_t[n] u_t) gives h_t[n] for every step at once. The state at the
// chunk's end is carried into the next chunk by the scan's prefix callback, starting from the
// initial state. y_t = sum_n h_t[n] C_t[n] + D[e] u_t accumulates in registers, then is gated by
// silu(z_t). delta_bias and softplus are applied in the kernel.
//
// The same kernel, in its "chunk states" form, runs the backward's first pass: it skips y and
// stores the state at the start of every chunk, from which the backward recomputes the chunk.
//
// Dimensions: B batch, L length, E d_inner, N d_state.

#include <cub/block/block_scan.cuh>

#include <cstdint>

#include "cuda_scan_device.cuh"
#include "cuda_scan_launch.hpp"

namespace mambakit::scan_cuda {

namespace {

/// grid (ceil(E / kChannels), B), kThreads threads.
/// Reads  u, delta (B, L, E); A (E, N); B (B, L, N); delta_bias (E); initial_state (B, E, N);
///        in the full form also C (B, L, N), D (E), z (B, L, E).
/// Writes full form: y (B, L, E), final_state (B, E, N) when present.
///        chunk-states form: chunk_states (B, E, n_chunks, N), f32, contiguous: h before each chunk.
template <class T, int kThreads, bool kChunkStatesOnly>
__global__ __launch_bounds__(kThreads) void scan_forward_kernel(ForwardParams p, float* chunk_states) {
  constexpr int kChunk = kThreads * kItems;
  using BlockScan = cub::BlockScan<float2, kThreads, cub::BLOCK_SCAN_WARP_SCANS>;
  // Two scan storages used in turn: a warp may start the next scan while another still reads
  // the previous one's storage, but never two scans ahead (each scan synchronises the block).
  __shared__ typename BlockScan::TempStorage scan_storage[2];
  __shared__ float2 running[kChannels][kMaxDState];  // state of (channel, n) carried between chunks
  __shared__ float A_block[kChannels][kMaxDState];

  const std::int64_t L = p.shape.length, E = p.shape.d_inner;
  const int N = static_cast<int>(p.shape.d_state);
  const std::int64_t b = blockIdx.y;
  const std::int64_t e0 = static_cast<std::int64_t>(blockIdx.x) * kChannels;
  const int channels = static_cast<int>(E - e0 < kChannels ? E - e0 : kChannels);
  const std::int64_t n_chunks = (L + kChunk - 1) / kChunk;

  for (int k = static_cast<int>(threadIdx.x); k < channels * N; k += kThreads) {
    const int g = k / N, n = k % N;
    A_block[g][n] = *at<const float>(p.A, e0 + g, n);
    const float h0 = p.initial_state.data != nullptr ? *at<const float>(p.initial_state, b, e0 + g, n) : 0.f;
    running[g][n] = make_float2(1.f, h0);
  }
  float D_value[kChannels], bias[kChannels];
  load_channel_params(p, e0, channels, D_value, bias);
  __syncthreads();

  int parity = 0;
  for (std::int64_t chunk = 0; chunk < n_chunks; ++chunk) {
    __syncthreads();  // thread 0's writes of `running` in the previous chunk are seen
    const std::int64_t t0 = chunk * kChunk + static_cast<std::int64_t>(threadIdx.x) * kItems;
    float u[kChannels][kItems], dt[kChannels][kItems], out[kChannels][kItems];
    load_chunk_inputs<T>(p, b, t0, e0, channels, bias, u, dt);
#pragma unroll
    for (int g = 0; g < kChannels; ++g) {
#pragma unroll
      for (int i = 0; i < kItems; ++i) out[g][i] = D_value[g] * u[g][i];
    }
    for (int n = 0; n < N; ++n) {
      float B_value[kItems], C_value[kItems];
#pragma unroll
      for (int i = 0; i < kItems; ++i) {
        const std::int64_t t = t0 + i;
        B_value[i] = t < L ? load<T>(p.B, b, t, n) : 0.f;
        C_value[i] = !kChunkStatesOnly && t < L ? load<T>(p.C, b, t, n) : 0.f;
      }
#pragma unroll
      for (int g = 0; g < kChannels; ++g) {
        if (g >= channels) break;  // the same for the whole block
        const float A_value = A_block[g][n];
        float2 pairs[kItems];
#pragma unroll
        for (int i = 0; i < kItems; ++i) {
          pairs[i] = make_float2(expf(dt[g][i] * A_value), dt[g][i] * B_value[i] * u[g][i]);
        }
        if (kChunkStatesOnly && threadIdx.x == 0) {
          chunk_states[(((b * E + e0 + g) * n_chunks) + chunk) * N + n] = running[g][n].y;
        }
        RunningPrefix prefix(running[g][n]);
        BlockScan(scan_storage[parity]).InclusiveScan(pairs, pairs, PairCombine{}, prefix);
        parity ^= 1;
        if (threadIdx.x == 0) running[g][n] = prefix.running;
        if constexpr (!kChunkStatesOnly) {
#pragma unroll
          for (int i = 0; i < kItems; ++i) out[g][i] += pairs[i].y * C_value[i];
        }
      }
    }
    if constexpr (!kChunkStatesOnly) {
#pragma unroll
      for (int g = 0; g < kChannels; ++g) {
#pragma unroll
        for (int i = 0; i < kItems; ++i) {
          const std::int64_t t = t0 + i;
          if (t >= L || g >= channels) continue;
          float value = out[g][i];
          if (p.z.data != nullptr) {
            const float z = load<T>(p.z, b, t, e0 + g);
            value *= z * sigmoid(z);
          }
          *at<T>(p.y, b, t, e0 + g) = from_float<T>(value);
        }
      }
    }
  }

  if constexpr (!kChunkStatesOnly) {
    if (p.final_state.data == nullptr) return;
    __syncthreads();
    for (int k = static_cast<int>(threadIdx.x); k < channels * N; k += kThreads) {
      const int g = k / N, n = k % N;
      *at<float>(p.final_state, b, e0 + g, n) = running[g][n].y;
    }
  }
}

template <class T, bool kChunkStatesOnly>
cudaError_t launch_typed(const ForwardParams& params, float* chunk_states, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>((params.shape.d_inner + kChannels - 1) / kChannels),
                  static_cast<unsigned>(params.shape.batch));
  if (params.shape.length <= kShortLength) {
    scan_forward_kernel<T, kShortThreads, kChunkStatesOnly><<<grid, kShortThreads, 0, stream>>>(params, chunk_states);
  } else {
    scan_forward_kernel<T, kLongThreads, kChunkStatesOnly><<<grid, kLongThreads, 0, stream>>>(params, chunk_states);
  }
  return cudaGetLastError();
}

template <bool kChunkStatesOnly>
cudaError_t launch_any(const ForwardParams& params, float* chunk_states, cudaStream_t stream) {
  switch (params.dtype) {
    case sdk::DType::kF32: return launch_typed<float, kChunkStatesOnly>(params, chunk_states, stream);
    case sdk::DType::kF16: return launch_typed<__half, kChunkStatesOnly>(params, chunk_states, stream);
    case sdk::DType::kBF16: return launch_typed<__nv_bfloat16, kChunkStatesOnly>(params, chunk_states, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace

std::int64_t chunk_length(std::int64_t length) noexcept {
  return length <= kShortLength ? kShortThreads * kItems : kLongThreads * kItems;
}

cudaError_t launch_forward(const ForwardParams& params, cudaStream_t stream) noexcept {
  return launch_any<false>(params, nullptr, stream);
}

cudaError_t launch_chunk_states(const ForwardParams& params, float* chunk_states, cudaStream_t stream) noexcept {
  return launch_any<true>(params, chunk_states, stream);
}

}  // namespace mambakit::scan_cuda
