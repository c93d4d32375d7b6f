#pragma once
/// \file
/// Validating entry points to the SSD scan (ssd_kernel.hpp). Mixers call a kernel through
/// these, never through its virtual functions directly: the arguments are checked once here,
/// and kernels may assume valid input. The kernel is the one the host chose for the problem
/// (Context::kernels).

#include <cinttypes>

#include "mambakit/sdk/ssd_kernel.hpp"
#include "mambakit/sdk/tensor_checks.hpp"

namespace mambakit::sdk {

/// Checks `view` as (d0, d1, d2, d3) with its two inner dimensions contiguous: the same check as
/// check_contiguous_rows (tensor_checks.hpp), kept under this name for the plugins that call it.
inline Status check_ssd_rows(const TensorView& view, const char* name, DType dtype, Device device, std::int64_t d0,
                             std::int64_t d1, std::int64_t d2, std::int64_t d3, bool optional) noexcept {
  return check_contiguous_rows(view, name, dtype, device, d0, d1, d2, d3, optional);
}

/// The shape of a forward problem, from x (B, L, H, P) and B (B, L, G, N); invalid when either
/// is absent or of another rank.
inline SsdShape ssd_forward_shape(const SsdForwardArgs& args) noexcept {
  SsdShape shape;
  if (!args.x.present() || args.x.rank != 4 || !args.B.present() || args.B.rank != 4) return shape;
  shape.batch = args.x.shape[0];
  shape.length = args.x.shape[1];
  shape.heads = args.x.shape[2];
  shape.head_dim = args.x.shape[3];
  shape.groups = args.B.shape[2];
  shape.d_state = args.B.shape[3];
  shape.valid = ssd_shape(ssd_problem(Device{}, DType::kF32, shape)).valid;
  return shape;
}

/// Checks every tensor of `args` against ssd_kernel.hpp.
inline Status check_ssd_forward_args(const SsdForwardArgs& args, Device device) noexcept {
  const SsdShape s = ssd_forward_shape(args);
  if (!s.valid) {
    return Status::error(StatusCode::kInvalidArgument,
                         "ssd: x must be a present (B, L, H, P) tensor and B a present (B, L, G, N) one, all sizes "
                         ">= 1 and G dividing H");
  }
  const DType dtype = args.x.dtype;
  if (dtype != DType::kF32 && dtype != DType::kF64) {
    return Status::error(StatusCode::kInvalidArgument, "ssd: x is %s; f32 or f64 is required", dtype_name(dtype));
  }
  const std::int64_t b = s.batch, l = s.length, h = s.heads, p = s.head_dim, g = s.groups, n = s.d_state;
  MAMBAKIT_RETURN_IF_ERROR(check_ssd_rows(args.x, "ssd x", dtype, device, b, l, h, p, false));
  MAMBAKIT_RETURN_IF_ERROR(check_view(args.dt, "ssd dt", dtype, device, {b, l, h}));
  MAMBAKIT_RETURN_IF_ERROR(check_view(args.A, "ssd A", dtype, device, {h}));
  MAMBAKIT_RETURN_IF_ERROR(check_ssd_rows(args.B, "ssd B", dtype, device, b, l, g, n, false));
  MAMBAKIT_RETURN_IF_ERROR(check_ssd_rows(args.C, "ssd C", dtype, device, b, l, g, n, false));
  MAMBAKIT_RETURN_IF_ERROR(check_optional_view(args.D, "ssd D", dtype, device, {h}));
  for (const TensorView* state : {&args.initial_state, &args.final_state}) {
    if (state->present() && !state->is_contiguous()) {
      return Status::error(StatusCode::kInvalidArgument, "ssd: states must be contiguous");
    }
  }
  MAMBAKIT_RETURN_IF_ERROR(check_optional_view(args.initial_state, "ssd initial_state", dtype, device, {b, h, p, n}));
  MAMBAKIT_RETURN_IF_ERROR(check_optional_view(args.final_state, "ssd final_state", dtype, device, {b, h, p, n}));
  return check_ssd_rows(args.y, "ssd y", dtype, device, b, l, h, p, false);
}

/// Checks the forward inputs and every gradient of `args`.
inline Status check_ssd_backward_args(const SsdBackwardArgs& args, Device device) noexcept {
  SsdForwardArgs inputs = args.forward;
  inputs.y = args.grad_y;  // y is ignored by backward; grad_y takes its shape and place
  inputs.final_state = TensorView{};
  MAMBAKIT_RETURN_IF_ERROR(check_ssd_forward_args(inputs, device));
  const SsdShape s = ssd_forward_shape(inputs);
  const DType dtype = inputs.x.dtype;
  const std::int64_t b = s.batch, l = s.length, h = s.heads, p = s.head_dim, g = s.groups, n = s.d_state;
  MAMBAKIT_RETURN_IF_ERROR(check_optional_view(args.grad_final_state, "ssd grad_final_state", dtype, device, {b, h, p, n}));
  MAMBAKIT_RETURN_IF_ERROR(check_ssd_rows(args.grad_x, "ssd grad_x", dtype, device, b, l, h, p, true));
  MAMBAKIT_RETURN_IF_ERROR(check_optional_view(args.grad_dt, "ssd grad_dt", dtype, device, {b, l, h}));
  MAMBAKIT_RETURN_IF_ERROR(check_optional_view(args.grad_A, "ssd grad_A", dtype, device, {h}));
  MAMBAKIT_RETURN_IF_ERROR(check_ssd_rows(args.grad_B, "ssd grad_B", dtype, device, b, l, g, n, true));
  MAMBAKIT_RETURN_IF_ERROR(check_ssd_rows(args.grad_C, "ssd grad_C", dtype, device, b, l, g, n, true));
  MAMBAKIT_RETURN_IF_ERROR(check_optional_view(args.grad_D, "ssd grad_D", dtype, device, {h}));
  MAMBAKIT_RETURN_IF_ERROR(
      check_optional_view(args.grad_initial_state, "ssd grad_initial_state", dtype, device, {b, h, p, n}));
  for (const TensorView* state : {&args.grad_final_state, &args.grad_initial_state}) {
    if (state->present() && !state->is_contiguous()) {
      return Status::error(StatusCode::kInvalidArgument, "ssd: state gradients must be contiguous");
    }
  }
  if ((args.grad_D.present() && !inputs.D.present()) ||
      (args.grad_initial_state.present() && !inputs.initial_state.present())) {
    return Status::error(StatusCode::kInvalidArgument,
                         "ssd backward: a gradient was requested for an optional input that is absent");
  }
  return Status::success();
}

/// Checks every tensor of a step, taking B, H and P from x and G and N from B.
inline Status check_ssd_step_args(const SsdStepArgs& args, Device device) noexcept {
  if (!args.x.present() || args.x.rank != 3 || !args.B.present() || args.B.rank != 3) {
    return Status::error(StatusCode::kInvalidArgument,
                         "ssd step: x must be a present (B, H, P) tensor and B a present (B, G, N) one");
  }
  const std::int64_t b = args.x.shape[0], h = args.x.shape[1], p = args.x.shape[2];
  const std::int64_t g = args.B.shape[1], n = args.B.shape[2];
  if (b < 1 || h < 1 || p < 1 || g < 1 || n < 1 || h % g != 0) {
    return Status::error(StatusCode::kInvalidArgument, "ssd step: sizes must be >= 1 and G must divide H");
  }
  const DType dtype = args.x.dtype;
  if (dtype != DType::kF32 && dtype != DType::kF64) {
    return Status::error(StatusCode::kInvalidArgument, "ssd step: x is %s; f32 or f64 is required", dtype_name(dtype));
  }
  MAMBAKIT_RETURN_IF_ERROR(check_view(args.x, "ssd step x", dtype, device, {b, h, p}));
  if (h > 1 && args.x.strides[1] != p) {
    return Status::error(StatusCode::kInvalidArgument, "ssd step x: its rows of H x P must be contiguous");
  }
  MAMBAKIT_RETURN_IF_ERROR(check_view(args.dt, "ssd step dt", dtype, device, {b, h}));
  MAMBAKIT_RETURN_IF_ERROR(check_view(args.A, "ssd step A", dtype, device, {h}));
  MAMBAKIT_RETURN_IF_ERROR(check_view(args.B, "ssd step B", dtype, device, {b, g, n}));
  MAMBAKIT_RETURN_IF_ERROR(check_view(args.C, "ssd step C", dtype, device, {b, g, n}));
  if (g > 1 && (args.B.strides[1] != n || args.C.strides[1] != n)) {
    return Status::error(StatusCode::kInvalidArgument, "ssd step B and C: their rows of G x N must be contiguous");
  }
  MAMBAKIT_RETURN_IF_ERROR(check_optional_view(args.D, "ssd step D", dtype, device, {h}));
  MAMBAKIT_RETURN_IF_ERROR(check_view(args.state, "ssd step state", dtype, device, {b, h, p, n}));
  if (!args.state.is_contiguous()) {
    return Status::error(StatusCode::kInvalidArgument, "ssd step: the state must be contiguous");
  }
  MAMBAKIT_RETURN_IF_ERROR(check_view(args.y, "ssd step y", dtype, device, {b, h, p}));
  if (h > 1 && args.y.strides[1] != p) {
    return Status::error(StatusCode::kInvalidArgument, "ssd step y: its rows of H x P must be contiguous");
  }
  return Status::success();
}

/// Writes to `*out` the SSD kernel that the host chose for `problem`.
inline Status find_ssd_kernel(const Context& context, const KernelProblem& problem, SsdKernel** out) noexcept {
  if (context.kernels == nullptr) {
    return Status::error(StatusCode::kInvalidArgument, "the call's context carries no kernel provider");
  }
  Kernel* kernel = nullptr;
  MAMBAKIT_RETURN_IF_ERROR(context.kernels->find(kSsdKind, problem, &kernel));
  *out = static_cast<SsdKernel*>(kernel);  // registered under kSsdKind: an SsdKernel
  return Status::success();
}

/// Validates `args`, asks the host for the SSD kernel of the problem, and runs its forward.
/// `before_backward`: a backward of the same problem follows, so the kernel must have one.
inline Status ssd_forward(const Context& context, const SsdForwardArgs& args, bool before_backward = false) noexcept {
  MAMBAKIT_RETURN_IF_ERROR(check_ssd_forward_args(args, context.device));
  SsdKernel* kernel = nullptr;
  MAMBAKIT_RETURN_IF_ERROR(find_ssd_kernel(
      context, ssd_problem(context.device, args.x.dtype, ssd_forward_shape(args), before_backward), &kernel));
  return kernel->forward(context, args);
}

/// As ssd_forward, for the backward.
inline Status ssd_backward(const Context& context, const SsdBackwardArgs& args) noexcept {
  MAMBAKIT_RETURN_IF_ERROR(check_ssd_backward_args(args, context.device));
  SsdKernel* kernel = nullptr;
  MAMBAKIT_RETURN_IF_ERROR(find_ssd_kernel(
      context, ssd_problem(context.device, args.forward.x.dtype, ssd_forward_shape(args.forward), true), &kernel));
  return kernel->backward(context, args);
}

/// The SSD problem of one step of `args` (length 1, needing the step path).
inline KernelProblem ssd_step_problem(Device device, const SsdStepArgs& args) noexcept {
  SsdShape shape;
  shape.batch = args.x.shape[0];
  shape.length = 1;
  shape.heads = args.x.shape[1];
  shape.head_dim = args.x.shape[2];
  shape.groups = args.B.shape[1];
  shape.d_state = args.B.shape[2];
  return ssd_problem(device, args.x.dtype, shape, false, true);
}

/// Validates `args`, asks the host for the SSD kernel of this one-token problem, and runs its step.
inline Status ssd_step(const Context& context, const SsdStepArgs& args) noexcept {
  MAMBAKIT_RETURN_IF_ERROR(check_ssd_step_args(args, context.device));
  SsdKernel* kernel = nullptr;
  MAMBAKIT_RETURN_IF_ERROR(find_ssd_kernel(context, ssd_step_problem(context.device, args), &kernel));
  return kernel->step(context, args);
}

}  // namespace mambakit::sdk
