// The launchers of linear_launch.hpp: the few-rows projection (kernel in few_rows.cuh), the
// widening of 16-bit weights to f32 before a cuBLAS GEMM, the bias added after one, and the
// bias gradient (column sums).
// Compiled into every plugin that uses them (the mambakit_plugin_common_cuda interface target
// adds this file to its sources).
//
// Dimensions: M rows, K in features, N out features.

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "device_math.cuh"
#include "few_rows.cuh"
#include "linear_launch.hpp"

namespace mambakit::cuda_common {

namespace {

bool aligned16(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

template <class W, int kRows>
cudaError_t launch_few_rows_group(const FewRowsArgs& args, bool vectorised, cudaStream_t stream) {
  const std::int64_t blocks = (args.n + kFewRowsWarps - 1) / kFewRowsWarps;
  few_rows_kernel<W, kRows><<<static_cast<unsigned>(blocks), kFewRowsWarps * 32, 0, stream>>>(args, vectorised);
  return cudaGetLastError();
}

/// Launches the kernel for each group of up to kFewRowsGroup rows, with the smallest row
/// capacity (1, 2, 4, 8 or 16) that holds the group.
template <class W>
cudaError_t launch_few_rows_typed(const FewRowsArgs& args, cudaStream_t stream) {
  static_assert(kFewRowsGroup == 16, "the dispatch below covers groups of up to 16 rows");
  constexpr std::int64_t kPack = 16 / static_cast<std::int64_t>(sizeof(W));
  const bool vectorised = aligned16(args.weight.data) && args.k % kPack == 0 && aligned16(args.x) && args.ldx % 4 == 0;
  for (std::int64_t row0 = 0; row0 < args.m; row0 += kFewRowsGroup) {
    FewRowsArgs group = args;
    group.x = args.x + row0 * args.ldx;
    group.y = args.y + row0 * args.ldy;
    group.m = args.m - row0 < kFewRowsGroup ? args.m - row0 : kFewRowsGroup;
    cudaError_t error;
    if (group.m == 1) {
      error = launch_few_rows_group<W, 1>(group, vectorised, stream);
    } else if (group.m <= 2) {
      error = launch_few_rows_group<W, 2>(group, vectorised, stream);
    } else if (group.m <= 4) {
      error = launch_few_rows_group<W, 4>(group, vectorised, stream);
    } else if (group.m <= 8) {
      error = launch_few_rows_group<W, 8>(group, vectorised, stream);
    } else {
      error = launch_few_rows_group<W, 16>(group, vectorised, stream);
    }
    if (error != cudaSuccess) return error;
  }
  return cudaSuccess;
}

/// grid-stride over count.  Reads in (count) f32/f16/bf16.  Writes out (count) f32.
template <class T>
__global__ void widen_kernel(const T* in, float* out, std::int64_t count) {
  for (std::int64_t i = grid_stride_begin(); i < count; i += grid_stride_step()) out[i] = to_f32(in[i]);
}

/// grid-stride over M * N.  Reads bias (N).  Updates y (M, N; row stride ldy) +=.
__global__ void add_bias_kernel(float* y, std::int64_t ldy, DeviceParam bias, std::int64_t m, std::int64_t n) {
  for (std::int64_t i = grid_stride_begin(); i < m * n; i += grid_stride_step()) {
    const std::int64_t row = i / n, column = i % n;
    y[row * ldy + column] += load_param(bias, column, 0.f);
  }
}

/// Columns per block of the column sums, and row slices summed in parallel per column.
constexpr int kSumColumns = 32, kSumSlices = 8;

/// grid ceil(N / kSumColumns), block (kSumColumns, kSumSlices): thread (c, s) sums rows s,
/// s + kSumSlices, ... of column blockIdx.x * kSumColumns + c; the block then adds its
/// kSumSlices partial sums in order.
/// Reads y (M, N; row stride ldy).  Updates sums (N) +=.
__global__ void add_column_sums_kernel(const float* y, std::int64_t ldy, std::int64_t m, std::int64_t n, float* sums) {
  __shared__ float partial[kSumSlices][kSumColumns];
  const std::int64_t column = static_cast<std::int64_t>(blockIdx.x) * kSumColumns + threadIdx.x;
  float sum = 0.f;
  if (column < n) {
    for (std::int64_t row = threadIdx.y; row < m; row += kSumSlices) sum += y[row * ldy + column];
  }
  partial[threadIdx.y][threadIdx.x] = sum;
  __syncthreads();
  if (threadIdx.y != 0 || column >= n) return;
  float total = 0.f;
  for (int slice = 0; slice < kSumSlices; ++slice) total += partial[slice][threadIdx.x];
  sums[column] += total;
}

}  // namespace

cudaError_t launch_linear_few_rows(const FewRowsArgs& args, cudaStream_t stream) noexcept {
  if (args.m < 1 || args.n < 1 || args.k < 1) return cudaErrorInvalidValue;
  switch (args.weight.dtype) {
    case sdk::DType::kF32: return launch_few_rows_typed<float>(args, stream);
    case sdk::DType::kF16: return launch_few_rows_typed<__half>(args, stream);
    case sdk::DType::kBF16: return launch_few_rows_typed<__nv_bfloat16>(args, stream);
    default: return cudaErrorInvalidValue;
  }
}

cudaError_t launch_widen_to_f32(DeviceParam in, float* out, std::int64_t count, cudaStream_t stream) noexcept {
  if (count < 1) return cudaSuccess;
  const unsigned blocks = grid_stride_blocks(count);
  switch (in.dtype) {
    case sdk::DType::kF32:
      widen_kernel<float><<<blocks, kElementThreads, 0, stream>>>(static_cast<const float*>(in.data), out, count);
      break;
    case sdk::DType::kF16:
      widen_kernel<__half><<<blocks, kElementThreads, 0, stream>>>(static_cast<const __half*>(in.data), out, count);
      break;
    case sdk::DType::kBF16:
      widen_kernel<__nv_bfloat16>
          <<<blocks, kElementThreads, 0, stream>>>(static_cast<const __nv_bfloat16*>(in.data), out, count);
      break;
    default: return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

cudaError_t launch_add_bias(float* y, std::int64_t ldy, DeviceParam bias, std::int64_t m, std::int64_t n,
                            cudaStream_t stream) noexcept {
  if (bias.data == nullptr || m < 1 || n < 1) return cudaSuccess;
  add_bias_kernel<<<grid_stride_blocks(m * n), kElementThreads, 0, stream>>>(y, ldy, bias, m, n);
  return cudaGetLastError();
}

cudaError_t launch_add_column_sums(const float* y, std::int64_t ldy, std::int64_t m, std::int64_t n, float* sums,
                                   cudaStream_t stream) noexcept {
  if (sums == nullptr || m < 1 || n < 1) return cudaSuccess;
  const unsigned blocks = static_cast<unsigned>((n + kSumColumns - 1) / kSumColumns);
  add_column_sums_kernel<<<blocks, dim3(kSumColumns, kSumSlices), 0, stream>>>(y, ldy, m, n, sums);
  return cudaGetLastError();
}

}  // namespace mambakit::cuda_common
