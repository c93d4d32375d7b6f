// Next-token cross-entropy on the device (see loss_kernels.hpp): one thread block per position;
// a block reduces the row's maximum (f32), then the sum of exp(logit - max) (f64), and writes
// the position's loss and gradient row, with the CPU's expressions and roundings.
//
// Dimensions: B batch, L length, M = B x L positions, V logits per position.

#include "loss_kernels.hpp"

#include "block_reduce.cuh"

namespace mambakit::cuda {

namespace {

constexpr int kThreads = 256;

/// logits (M, V), ids (M), lengths (B) or nullptr, grad (M, V) or nullptr, row_losses (M);
/// grid (M), block kThreads.
__global__ void lm_cross_entropy_kernel(const float* __restrict__ logits, const std::int32_t* __restrict__ ids,
                                        const std::int32_t* __restrict__ lengths, std::int64_t length,
                                        std::int64_t vocab, double count, float* __restrict__ grad,
                                        double* __restrict__ row_losses) {
  __shared__ float maxima[kThreads];
  __shared__ double sums[kThreads];
  const std::int64_t position = blockIdx.x;
  const std::int64_t b = position / length, t = position % length;
  std::int64_t valid = length;
  if (lengths != nullptr && lengths[b] < length) valid = lengths[b];
  const float* row = logits + position * vocab;
  float* out = grad != nullptr ? grad + position * vocab : nullptr;
  if (t + 1 >= valid) {  // the same for the whole block: no barrier is skipped by some threads only
    if (out != nullptr) {
      for (std::int64_t v = threadIdx.x; v < vocab; v += blockDim.x) out[v] = 0.0f;
    }
    if (threadIdx.x == 0) row_losses[position] = 0.0;
    return;
  }
  const std::int32_t target = ids[position + 1];

  float top = row[0];
  for (std::int64_t v = threadIdx.x; v < vocab; v += blockDim.x) top = fmaxf(top, row[v]);
  top = block_reduce<kThreads>(top, maxima, MaxOp{});

  double sum = 0.0;
  for (std::int64_t v = threadIdx.x; v < vocab; v += blockDim.x) sum += exp(static_cast<double>(__fsub_rn(row[v], top)));
  sum = block_reduce<kThreads>(sum, sums, AddOp{});
  const double log_sum = log(sum) + top;
  if (threadIdx.x == 0) row_losses[position] = log_sum - row[target];
  if (out == nullptr) return;
  const float one_hot = static_cast<float>(1.0 / count);
  for (std::int64_t v = threadIdx.x; v < vocab; v += blockDim.x) {
    float value = static_cast<float>(exp(row[v] - log_sum) / count);
    if (v == target) value = __fsub_rn(value, one_hot);
    out[v] = value;
  }
}

}  // namespace

cudaError_t launch_lm_cross_entropy(const float* logits, const std::int32_t* ids, const std::int32_t* lengths,
                                    std::int64_t batch, std::int64_t length, std::int64_t vocab, std::int64_t count,
                                    float* grad, double* row_losses, cudaStream_t stream) {
  const std::int64_t positions = batch * length;
  if (positions == 0) return cudaSuccess;
  lm_cross_entropy_kernel<<<static_cast<unsigned>(positions), kThreads, 0, stream>>>(
      logits, ids, lengths, length, vocab, static_cast<double>(count), grad, row_losses);
  return cudaGetLastError();
}

}  // namespace mambakit::cuda
