#pragma once
// Reductions over one thread block, by a fixed tree (halves, then quarters, ...), so a result
// depends only on the block size, not on scheduling. Device code of CUDA builds only.

#include <cuda_runtime.h>

namespace mambakit::cuda {

struct AddOp {
  template <class T>
  __device__ T operator()(T a, T b) const {
    return a + b;
  }
};

struct MaxOp {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

/// Combines `value` over the kThreads threads of the block (blockDim.x == kThreads) through
/// `partial` (kThreads entries of shared memory); every thread gets the result. Every thread
/// of the block must call it.
template <int kThreads, class T, class Op>
__device__ T block_reduce(T value, T* partial, Op op) {
  partial[threadIdx.x] = value;
  __syncthreads();
  for (int half = kThreads / 2; half > 0; half /= 2) {
    if (static_cast<int>(threadIdx.x) < half) partial[threadIdx.x] = op(partial[threadIdx.x], partial[threadIdx.x + half]);
    __syncthreads();
  }
  const T result = partial[0];
  __syncthreads();  // `partial` may be reused by the next call
  return result;
}

}  // namespace mambakit::cuda
