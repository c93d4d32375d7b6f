// Backbone kernels on the device (see device_kernels.hpp): what the CPU versions in
// framework/src/model/backbone_kernels.cpp compute, with one thread block per row (the
// RMSNorm weight gradient: one thread per column over a block of rows, blocks added atomically).
//
// Dimensions: M rows (batch x length), D d_model, R logits rows, S row stride.

#include <cuda_fp16.h>

#include <algorithm>

#include "block_reduce.cuh"
#include "device_kernels.hpp"

namespace mambakit::cuda {

namespace {

constexpr int kThreads = 256;

__device__ float widen(float value) { return value; }
__device__ float widen_f16(std::uint16_t bits) { return __half2float(__ushort_as_half(bits)); }
__device__ float widen_bf16(std::uint16_t bits) { return __uint_as_float(static_cast<unsigned>(bits) << 16); }

/// out (M, D) = table[ids[m]] (V, D); grid (M), block kThreads.
template <int kKind>
__global__ void embedding_kernel(const std::int32_t* __restrict__ ids, const void* __restrict__ table,
                                 float* __restrict__ out, std::int64_t d_model) {
  const std::int64_t row = blockIdx.x;
  const std::int64_t source = static_cast<std::int64_t>(ids[row]) * d_model;
  float* target = out + row * d_model;
  for (std::int64_t d = threadIdx.x; d < d_model; d += blockDim.x) {
    if constexpr (kKind == 0) {
      target[d] = widen(static_cast<const float*>(table)[source + d]);
    } else if constexpr (kKind == 1) {
      target[d] = widen_f16(static_cast<const std::uint16_t*>(table)[source + d]);
    } else {
      target[d] = widen_bf16(static_cast<const std::uint16_t*>(table)[source + d]);
    }
  }
}

/// x (M, D), weight (D), out (M, D); grid (M), block kThreads.
__global__ void rms_norm_kernel(const float* __restrict__ x, const float* __restrict__ weight, float* __restrict__ out,
                                std::int64_t d_model, double eps) {
  __shared__ double partial[kThreads];
  const float* row = x + static_cast<std::int64_t>(blockIdx.x) * d_model;
  double sum_squares = 0.0;
  for (std::int64_t d = threadIdx.x; d < d_model; d += blockDim.x) {
    sum_squares += static_cast<double>(row[d]) * static_cast<double>(row[d]);
  }
  sum_squares = block_reduce<kThreads>(sum_squares, partial, AddOp{});
  const float scale = static_cast<float>(1.0 / sqrt(sum_squares / static_cast<double>(d_model) + eps));
  float* result = out + static_cast<std::int64_t>(blockIdx.x) * d_model;
  for (std::int64_t d = threadIdx.x; d < d_model; d += blockDim.x) {
    result[d] = __fmul_rn(__fmul_rn(row[d], scale), weight[d]);
  }
}

/// x (count) += y (count); a grid-stride loop.
__global__ void add_kernel(float* __restrict__ x, const float* __restrict__ y, std::int64_t count) {
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    x[i] = __fadd_rn(x[i], y[i]);
  }
}

/// ids (R) = argmax of logits (R, S) over the first `count` columns; grid (R), block kThreads.
__global__ void argmax_kernel(const float* __restrict__ logits, std::int64_t row_stride, std::int64_t count,
                              std::int32_t* __restrict__ ids) {
  __shared__ float values[kThreads];
  __shared__ std::int64_t indices[kThreads];
  const float* row = logits + static_cast<std::int64_t>(blockIdx.x) * row_stride;
  float best = 0.0f;
  std::int64_t best_index = -1;
  for (std::int64_t v = threadIdx.x; v < count; v += blockDim.x) {
    if (best_index < 0 || best < row[v]) {
      best = row[v];
      best_index = v;
    }
  }
  values[threadIdx.x] = best;
  indices[threadIdx.x] = best_index;
  __syncthreads();
  for (int half = kThreads / 2; half > 0; half /= 2) {
    if (static_cast<int>(threadIdx.x) < half) {
      const float other = values[threadIdx.x + half];
      const std::int64_t other_index = indices[threadIdx.x + half];
      const std::int64_t mine = indices[threadIdx.x];
      const bool take = other_index >= 0 &&
                        (mine < 0 || values[threadIdx.x] < other || (values[threadIdx.x] == other && other_index < mine));
      if (take) {
        values[threadIdx.x] = other;
        indices[threadIdx.x] = other_index;
      }
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) ids[blockIdx.x] = static_cast<std::int32_t>(indices[0] < 0 ? 0 : indices[0]);
}

/// x (count) *= y (count); a grid-stride loop.
__global__ void multiply_kernel(float* __restrict__ x, const float* __restrict__ y, std::int64_t count) {
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    x[i] = __fmul_rn(x[i], y[i]);
  }
}

/// The input gradient of RMSNorm, y = x r w with r = (mean(x^2) + eps)^-1/2:
/// grad_x += r (g w) - x r^3 <g w, x> / D; row_scales[m] = r. x, grad_out, grad_x (M, D),
/// weight (D), row_scales (M); grid (M), block kThreads.
__global__ void rms_norm_backward_rows_kernel(const float* __restrict__ x, const float* __restrict__ weight,
                                              const float* __restrict__ grad_out, float* __restrict__ grad_x,
                                              double* __restrict__ row_scales, std::int64_t d_model, double eps) {
  __shared__ double partial[kThreads];
  const std::int64_t offset = static_cast<std::int64_t>(blockIdx.x) * d_model;
  const float* row = x + offset;
  const float* g = grad_out + offset;
  double sum_squares = 0.0, dot = 0.0;
  for (std::int64_t d = threadIdx.x; d < d_model; d += blockDim.x) {
    sum_squares += static_cast<double>(row[d]) * row[d];
    dot += static_cast<double>(g[d]) * weight[d] * row[d];
  }
  sum_squares = block_reduce<kThreads>(sum_squares, partial, AddOp{});
  dot = block_reduce<kThreads>(dot, partial, AddOp{});
  const double scale = 1.0 / sqrt(sum_squares / static_cast<double>(d_model) + eps);
  const double correction = scale * scale * scale * dot / static_cast<double>(d_model);
  float* out = grad_x + offset;
  for (std::int64_t d = threadIdx.x; d < d_model; d += blockDim.x) {
    out[d] = __fadd_rn(out[d], static_cast<float>(scale * g[d] * weight[d] - row[d] * correction));
  }
  if (threadIdx.x == 0) row_scales[blockIdx.x] = scale;
}

/// Rows of the weight gradient summed per block: grad_weight[d] += sum over this block's rows
/// of g[m, d] x[m, d] r[m] (summed in f64, added as f32). x, grad_out (M, D), row_scales (M),
/// grad_weight (D); grid (ceil(D / kThreads), row blocks), block kThreads.
__global__ void rms_norm_backward_weight_kernel(const float* __restrict__ x, const float* __restrict__ grad_out,
                                                const double* __restrict__ row_scales, float* __restrict__ grad_weight,
                                                std::int64_t rows, std::int64_t d_model, std::int64_t rows_per_block) {
  const std::int64_t d = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (d >= d_model) return;
  const std::int64_t first = static_cast<std::int64_t>(blockIdx.y) * rows_per_block;
  const std::int64_t last = first + rows_per_block < rows ? first + rows_per_block : rows;
  double sum = 0.0;
  for (std::int64_t m = first; m < last; ++m) {
    sum += static_cast<double>(grad_out[m * d_model + d]) * x[m * d_model + d] * row_scales[m];
  }
  if (first < last) atomicAdd(grad_weight + d, static_cast<float>(sum));
}

/// grad_table[ids[m]] (V, D) += grad_out[m] (M, D); grid (M), block kThreads.
__global__ void embedding_backward_kernel(const std::int32_t* __restrict__ ids, const float* __restrict__ grad_out,
                                          float* __restrict__ grad_table, std::int64_t d_model) {
  const std::int64_t row = blockIdx.x;
  float* target = grad_table + static_cast<std::int64_t>(ids[row]) * d_model;
  const float* source = grad_out + row * d_model;
  for (std::int64_t d = threadIdx.x; d < d_model; d += blockDim.x) atomicAdd(target + d, source[d]);
}

/// Blocks for a grid-stride loop over `count` elements.
unsigned blocks_for(std::int64_t count) {
  const std::int64_t blocks = (count + kThreads - 1) / kThreads;
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > 65535 ? 65535 : blocks));
}

}  // namespace

cudaError_t launch_embedding(const std::int32_t* ids, const void* table, sdk::DType table_dtype, float* out,
                             std::int64_t rows, std::int64_t d_model, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  const dim3 grid(static_cast<unsigned>(rows));
  switch (table_dtype) {
    case sdk::DType::kF32: embedding_kernel<0><<<grid, kThreads, 0, stream>>>(ids, table, out, d_model); break;
    case sdk::DType::kF16: embedding_kernel<1><<<grid, kThreads, 0, stream>>>(ids, table, out, d_model); break;
    case sdk::DType::kBF16: embedding_kernel<2><<<grid, kThreads, 0, stream>>>(ids, table, out, d_model); break;
    default: return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

cudaError_t launch_rms_norm(const float* x, const float* weight, float* out, std::int64_t rows, std::int64_t d_model,
                            double eps, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  rms_norm_kernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(x, weight, out, d_model, eps);
  return cudaGetLastError();
}

cudaError_t launch_add_in_place(float* x, const float* y, std::int64_t count, cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  add_kernel<<<blocks_for(count), kThreads, 0, stream>>>(x, y, count);
  return cudaGetLastError();
}

cudaError_t launch_argmax_rows(const float* logits, std::int64_t rows, std::int64_t row_stride, std::int64_t count,
                               std::int32_t* ids, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  argmax_kernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(logits, row_stride, count, ids);
  return cudaGetLastError();
}

cudaError_t launch_multiply_in_place(float* x, const float* y, std::int64_t count, cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  multiply_kernel<<<blocks_for(count), kThreads, 0, stream>>>(x, y, count);
  return cudaGetLastError();
}

cudaError_t launch_rms_norm_backward(const float* x, const float* weight, const float* grad_out, float* grad_x,
                                     float* grad_weight, double* row_scales, std::int64_t rows, std::int64_t d_model,
                                     double eps, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  rms_norm_backward_rows_kernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(x, weight, grad_out, grad_x,
                                                                                        row_scales, d_model, eps);
  const cudaError_t error = cudaGetLastError();
  if (error != cudaSuccess) return error;
  constexpr std::int64_t kRowsPerBlock = 64;
  const std::int64_t row_blocks = std::min<std::int64_t>((rows + kRowsPerBlock - 1) / kRowsPerBlock, 65535);
  const std::int64_t rows_per_block = (rows + row_blocks - 1) / row_blocks;
  const dim3 grid(static_cast<unsigned>((d_model + kThreads - 1) / kThreads), static_cast<unsigned>(row_blocks));
  rms_norm_backward_weight_kernel<<<grid, kThreads, 0, stream>>>(x, grad_out, row_scales, grad_weight, rows, d_model,
                                                                 rows_per_block);
  return cudaGetLastError();
}

cudaError_t launch_embedding_backward(const std::int32_t* ids, const float* grad_out, float* grad_table,
                                      std::int64_t rows, std::int64_t d_model, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  embedding_backward_kernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(ids, grad_out, grad_table, d_model);
  return cudaGetLastError();
}

}  // namespace mambakit::cuda
