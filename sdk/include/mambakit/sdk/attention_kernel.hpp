#pragma once
/// \file
/// AttentionKernel: the kernels of kind "attention", causal softmax attention over a key/value
/// cache with grouped-query heads, forward (prefill, and decode as L = 1) and backward.
///
/// Dimension legend: B batch, L new tokens per row, H query heads, Hkv key/value heads,
/// hd head_dim, C cache capacity (tokens). Query head h reads key/value head h / (H / Hkv).
/// Row b's L new queries sit at absolute positions p_b .. p_b + L - 1 (p_b = positions[b], 0
/// when positions are absent); query i of row b attends to the keys of positions 0 .. p_b + i
/// of that row, read from the cache, into which the caller has already written the new keys
/// (at p_b .. p_b + L - 1). With s_j = softmax_scale * q_i . k_j:
///   out_i = sum_j softmax(s)_j v_j,     lse_i = log sum_j exp(s_j)          (j <= p_b + i)
///
/// Tensor conventions (checked by attention_calls.hpp before a kernel runs): q, out and their
/// gradients are (B, L, H, hd); the caches k and v and their gradients are (B, C, Hkv, hd), with
/// p_b + L <= C for every row. Each of these has its two inner dimensions contiguous (a row of
/// H * hd or Hkv * hd elements) and free outer strides, so that q, k and v can be slices of one
/// wider projection (with C = L when nothing was held before). lse is a contiguous (B, H, L).
/// positions is a contiguous (B) i64. Everything else shares one dtype, f32 or f64.

#include <cstdint>

#include "mambakit/sdk/context.hpp"
#include "mambakit/sdk/kernel.hpp"
#include "mambakit/sdk/status.hpp"
#include "mambakit/sdk/tensor_view.hpp"

namespace mambakit::sdk {

/// The kernel kind of causal attention.
inline constexpr const char* kAttentionKind = "attention";

/// Positions of an attention problem's sizes in KernelProblem::dims.
enum AttentionDim : std::int32_t {
  kAttentionBatch = 0,
  kAttentionLength = 1,
  kAttentionHeads = 2,
  kAttentionHeadsKv = 3,
  kAttentionHeadDim = 4,
  kAttentionCapacity = 5,
  kAttentionDims = 6
};

/// The sizes of an attention problem.
struct AttentionShape {
  bool valid = false;  ///< all sizes >= 1, Hkv dividing H and L <= C (when read from a KernelProblem)
  std::int64_t batch = 0, length = 0, heads = 0, heads_kv = 0, head_dim = 0, capacity = 0;
};

/// The KernelProblem of an attention call of `shape`. A decode step is a problem of length 1.
inline KernelProblem attention_problem(Device device, DType dtype, const AttentionShape& shape,
                                       bool needs_backward = false) noexcept {
  KernelProblem problem;
  problem.device = device;
  problem.dtype = dtype;
  problem.n_dims = kAttentionDims;
  problem.dims[kAttentionBatch] = shape.batch;
  problem.dims[kAttentionLength] = shape.length;
  problem.dims[kAttentionHeads] = shape.heads;
  problem.dims[kAttentionHeadsKv] = shape.heads_kv;
  problem.dims[kAttentionHeadDim] = shape.head_dim;
  problem.dims[kAttentionCapacity] = shape.capacity;
  problem.needs_backward = needs_backward;
  problem.needs_step = shape.length == 1;
  return problem;
}

/// The sizes of `problem` (invalid unless it carries kAttentionDims positive sizes with Hkv
/// dividing H and L <= C).
inline AttentionShape attention_shape(const KernelProblem& problem) noexcept {
  AttentionShape shape;
  if (problem.n_dims != kAttentionDims) return shape;
  shape.batch = problem.dims[kAttentionBatch];
  shape.length = problem.dims[kAttentionLength];
  shape.heads = problem.dims[kAttentionHeads];
  shape.heads_kv = problem.dims[kAttentionHeadsKv];
  shape.head_dim = problem.dims[kAttentionHeadDim];
  shape.capacity = problem.dims[kAttentionCapacity];
  shape.valid = shape.batch >= 1 && shape.length >= 1 && shape.heads >= 1 && shape.heads_kv >= 1 &&
                shape.head_dim >= 1 && shape.capacity >= shape.length && shape.heads % shape.heads_kv == 0;
  return shape;
}

/// Arguments of causal attention over the cache (see the file comment).
struct AttentionForwardArgs {
  std::uint32_t struct_size = sizeof(AttentionForwardArgs);
  TensorView q;               ///< in  (B, L, H, hd): the new queries
  TensorView k;               ///< in  (B, C, Hkv, hd): keys of positions 0 .. p_b + L - 1 of each row
  TensorView v;               ///< in  (B, C, Hkv, hd): values, likewise
  TensorView positions;       ///< in  (B) i64, optional (zeros): p_b, the tokens row b held before
  double softmax_scale = 0;   ///< the factor of q . k, finite and > 0 (usually 1 / sqrt(hd))
  TensorView out;             ///< out (B, L, H, hd), overwritten
  TensorView lse;             ///< out (B, H, L), optional: the log-sum-exp of each query's scores
};

/// Arguments of the backward pass, of the objective whose gradient with respect to `out` is
/// grad_out. forward.out and forward.lse are inputs here: what forward wrote (lse is required).
/// Every gradient output accumulates (+=); an absent one is not computed. grad_k and grad_v
/// receive the gradients of every key and value read, cache positions 0 .. p_b + L - 1; the
/// rest of them is untouched. The result does not depend on the thread count.
struct AttentionBackwardArgs {
  std::uint32_t struct_size = sizeof(AttentionBackwardArgs);
  AttentionForwardArgs forward;  ///< the forward's inputs, out and lse
  TensorView grad_out;           ///< in  (B, L, H, hd)
  TensorView grad_q;             ///< out (B, L, H, hd) +=, optional
  TensorView grad_k;             ///< out (B, C, Hkv, hd) +=, optional
  TensorView grad_v;             ///< out (B, C, Hkv, hd) +=, optional
};

/// An attention implementation: a Kernel registered under kAttentionKind. Its score() reads
/// the problem's dims in AttentionDim order and returns 0 for what it cannot run (a device, a
/// dtype, a backward it lacks). Methods may run from several threads at once: a kernel keeps no
/// per-call state in members. Callers go through attention_calls.hpp, which validates the
/// arguments first. Append-only: new virtual functions go after the last one, with an ABI
/// minor bump.
class AttentionKernel : public Kernel {
 public:
  /// The attention of every new query, with Context::n_threads threads. A decode step is the
  /// call with L = 1.
  virtual Status forward(const Context& context, const AttentionForwardArgs& args) noexcept = 0;
  /// Its backward (see AttentionBackwardArgs); kUnsupported when the kernel has none.
  virtual Status backward(const Context& context, const AttentionBackwardArgs& args) noexcept = 0;
};

}  // namespace mambakit::sdk
