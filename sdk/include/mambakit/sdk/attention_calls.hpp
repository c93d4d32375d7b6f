#pragma once
/// \file
/// Validating entry points to causal attention (attention_kernel.hpp). Mixers call a kernel
/// through these, never through its virtual functions directly: the arguments are checked once
/// here, and kernels may assume valid input. The kernel is the one the host chose for the
/// problem (Context::kernels).

#include <cinttypes>
#include <cmath>

#include "mambakit/sdk/attention_kernel.hpp"
#include "mambakit/sdk/tensor_checks.hpp"

namespace mambakit::sdk {

/// The shape of a problem, from q (B, L, H, hd) and k (B, C, Hkv, hd); invalid when either is
/// absent or of another rank, or the sizes are not those of a problem.
inline AttentionShape attention_forward_shape(const AttentionForwardArgs& args) noexcept {
  AttentionShape shape;
  if (!args.q.present() || args.q.rank != 4 || !args.k.present() || args.k.rank != 4) return shape;
  shape.batch = args.q.shape[0];
  shape.length = args.q.shape[1];
  shape.heads = args.q.shape[2];
  shape.head_dim = args.q.shape[3];
  shape.capacity = args.k.shape[1];
  shape.heads_kv = args.k.shape[2];
  shape.valid = attention_shape(attention_problem(Device{}, DType::kF32, shape)).valid;
  return shape;
}

/// Checks the positions of `args` for a problem of `shape`: a contiguous (B) i64 view, and on
/// the CPU (where they can be read here) each p_b >= 0 with p_b + L <= C.
inline Status check_attention_positions(const TensorView& positions, const AttentionShape& shape,
                                        Device device) noexcept {
  if (!positions.present()) return Status::success();
  MAMBAKIT_RETURN_IF_ERROR(check_view(positions, "attention positions", DType::kI64, device, {shape.batch}));
  if (device.type != DeviceType::kCpu) return Status::success();
  const std::int64_t* p = positions.as<const std::int64_t>();
  for (std::int64_t b = 0; b < shape.batch; ++b) {
    if (p[b] < 0 || p[b] > shape.capacity - shape.length) {
      return Status::error(StatusCode::kInvalidArgument,
                           "attention: row %" PRId64 " is at position %" PRId64 "; with %" PRId64
                           " new tokens it needs a cache of at least %" PRId64 " tokens, not %" PRId64,
                           b, p[b], shape.length, p[b] + shape.length, shape.capacity);
    }
  }
  return Status::success();
}

/// Checks every tensor of `args` against attention_kernel.hpp. `with_outputs`: out (and lse
/// when present) are checked too.
inline Status check_attention_forward_args(const AttentionForwardArgs& args, Device device,
                                           bool with_outputs = true) noexcept {
  const AttentionShape s = attention_forward_shape(args);
  if (!s.valid) {
    return Status::error(StatusCode::kInvalidArgument,
                         "attention: q must be a present (B, L, H, hd) tensor and k a present (B, C, Hkv, hd) one, "
                         "all sizes >= 1, Hkv dividing H and L <= C");
  }
  const DType dtype = args.q.dtype;
  if (dtype != DType::kF32 && dtype != DType::kF64) {
    return Status::error(StatusCode::kInvalidArgument, "attention: q is %s; f32 or f64 is required",
                         dtype_name(dtype));
  }
  if (!(std::isfinite(args.softmax_scale) && args.softmax_scale > 0)) {
    return Status::error(StatusCode::kInvalidArgument, "attention: softmax_scale = %g must be finite and > 0",
                         args.softmax_scale);
  }
  const std::int64_t b = s.batch, l = s.length, h = s.heads, hkv = s.heads_kv, d = s.head_dim, c = s.capacity;
  MAMBAKIT_RETURN_IF_ERROR(check_contiguous_rows(args.q, "attention q", dtype, device, b, l, h, d, false));
  MAMBAKIT_RETURN_IF_ERROR(check_contiguous_rows(args.k, "attention k", dtype, device, b, c, hkv, d, false));
  MAMBAKIT_RETURN_IF_ERROR(check_contiguous_rows(args.v, "attention v", dtype, device, b, c, hkv, d, false));
  MAMBAKIT_RETURN_IF_ERROR(check_attention_positions(args.positions, s, device));
  if (!with_outputs) return Status::success();
  MAMBAKIT_RETURN_IF_ERROR(check_contiguous_rows(args.out, "attention out", dtype, device, b, l, h, d, false));
  MAMBAKIT_RETURN_IF_ERROR(check_optional_view(args.lse, "attention lse", dtype, device, {b, h, l}));
  if (args.lse.present() && !args.lse.is_contiguous()) {
    return Status::error(StatusCode::kInvalidArgument, "attention: lse must be contiguous");
  }
  return Status::success();
}

/// Checks the forward inputs, out, lse and every gradient of `args`.
inline Status check_attention_backward_args(const AttentionBackwardArgs& args, Device device) noexcept {
  MAMBAKIT_RETURN_IF_ERROR(check_attention_forward_args(args.forward, device));
  if (!args.forward.lse.present()) {
    return Status::error(StatusCode::kInvalidArgument,
                         "attention backward needs the lse its forward wrote (forward.lse is absent)");
  }
  const AttentionShape s = attention_forward_shape(args.forward);
  const DType dtype = args.forward.q.dtype;
  const std::int64_t b = s.batch, l = s.length, h = s.heads, hkv = s.heads_kv, d = s.head_dim, c = s.capacity;
  MAMBAKIT_RETURN_IF_ERROR(
      check_contiguous_rows(args.grad_out, "attention grad_out", dtype, device, b, l, h, d, false));
  MAMBAKIT_RETURN_IF_ERROR(check_contiguous_rows(args.grad_q, "attention grad_q", dtype, device, b, l, h, d, true));
  MAMBAKIT_RETURN_IF_ERROR(check_contiguous_rows(args.grad_k, "attention grad_k", dtype, device, b, c, hkv, d, true));
  MAMBAKIT_RETURN_IF_ERROR(check_contiguous_rows(args.grad_v, "attention grad_v", dtype, device, b, c, hkv, d, true));
  return Status::success();
}

/// Writes to `*out` the attention kernel that the host chose for `problem`.
inline Status find_attention_kernel(const Context& context, const KernelProblem& problem,
                                    AttentionKernel** out) noexcept {
  if (context.kernels == nullptr) {
    return Status::error(StatusCode::kInvalidArgument, "the call's context carries no kernel provider");
  }
  Kernel* kernel = nullptr;
  MAMBAKIT_RETURN_IF_ERROR(context.kernels->find(kAttentionKind, problem, &kernel));
  *out = static_cast<AttentionKernel*>(kernel);  // registered under kAttentionKind: an AttentionKernel
  return Status::success();
}

/// Validates `args`, asks the host for the attention kernel of the problem, and runs its
/// forward. `before_backward`: a backward of the same problem follows, so the kernel must have
/// one (and args.lse should be present for it).
inline Status attention_forward(const Context& context, const AttentionForwardArgs& args,
                                bool before_backward = false) noexcept {
  MAMBAKIT_RETURN_IF_ERROR(check_attention_forward_args(args, context.device));
  AttentionKernel* kernel = nullptr;
  MAMBAKIT_RETURN_IF_ERROR(find_attention_kernel(
      context, attention_problem(context.device, args.q.dtype, attention_forward_shape(args), before_backward),
      &kernel));
  return kernel->forward(context, args);
}

/// As attention_forward, for the backward.
inline Status attention_backward(const Context& context, const AttentionBackwardArgs& args) noexcept {
  MAMBAKIT_RETURN_IF_ERROR(check_attention_backward_args(args, context.device));
  AttentionKernel* kernel = nullptr;
  MAMBAKIT_RETURN_IF_ERROR(find_attention_kernel(
      context,
      attention_problem(context.device, args.forward.q.dtype, attention_forward_shape(args.forward), true),
      &kernel));
  return kernel->backward(context, args);
}

}  // namespace mambakit::sdk
