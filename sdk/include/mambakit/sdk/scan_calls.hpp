#pragma once
/// \file
/// Validating entry points to the selective scan. Mixers and the host call a backend through
/// these, never through its virtual functions directly: the arguments are checked once here,
/// and backends may assume valid input. The overloads without a backend ask the context's
/// KernelProvider for the kernel the host chose for the problem.

#include <cinttypes>

#include "mambakit/sdk/context.hpp"
#include "mambakit/sdk/scan_backend.hpp"
#include "mambakit/sdk/tensor_checks.hpp"

namespace mambakit::sdk {

/// The dtype of A, D, delta_bias and states for a problem of element type `dtype`.
constexpr DType scan_state_dtype(DType dtype) noexcept {
  return dtype == DType::kF64 ? DType::kF64 : DType::kF32;
}

/// Checks every tensor of `args` against the shapes in scan_backend.hpp, taking B, L, E and N
/// from u and A. `device` is the device of the call.
inline Status check_scan_forward_args(const ScanForwardArgs& args, Device device) noexcept {
  if (!args.u.present() || args.u.rank != 3) {
    return Status::error(StatusCode::kInvalidArgument, "scan: u must be a present (B, L, E) tensor");
  }
  if (!args.A.present() || args.A.rank != 2) {
    return Status::error(StatusCode::kInvalidArgument, "scan: A must be a present (E, N) tensor");
  }
  const std::int64_t batch = args.u.shape[0], length = args.u.shape[1], d_inner = args.u.shape[2];
  const std::int64_t d_state = args.A.shape[1];
  if (batch < 1 || length < 1 || d_inner < 1 || d_state < 1) {
    return Status::error(StatusCode::kInvalidArgument,
                         "scan: empty problem (B=%" PRId64 ", L=%" PRId64 ", E=%" PRId64 ", N=%" PRId64 ")",
                         batch, length, d_inner, d_state);
  }
  const DType dtype = args.u.dtype;
  const DType state_dtype = scan_state_dtype(dtype);
  MAMBAKIT_RETURN_IF_ERROR(check_view(args.u, "scan u", dtype, device, {batch, length, d_inner}));
  MAMBAKIT_RETURN_IF_ERROR(check_view(args.delta, "scan delta", dtype, device, {batch, length, d_inner}));
  MAMBAKIT_RETURN_IF_ERROR(check_view(args.A, "scan A", state_dtype, device, {d_inner, d_state}));
  MAMBAKIT_RETURN_IF_ERROR(check_view(args.B, "scan B", dtype, device, {batch, length, d_state}));
  MAMBAKIT_RETURN_IF_ERROR(check_view(args.C, "scan C", dtype, device, {batch, length, d_state}));
  MAMBAKIT_RETURN_IF_ERROR(check_optional_view(args.D, "scan D", state_dtype, device, {d_inner}));
  MAMBAKIT_RETURN_IF_ERROR(check_optional_view(args.z, "scan z", dtype, device, {batch, length, d_inner}));
  MAMBAKIT_RETURN_IF_ERROR(
      check_optional_view(args.delta_bias, "scan delta_bias", state_dtype, device, {d_inner}));
  MAMBAKIT_RETURN_IF_ERROR(check_optional_view(args.initial_state, "scan initial_state", state_dtype,
                                               device, {batch, d_inner, d_state}));
  MAMBAKIT_RETURN_IF_ERROR(check_optional_view(args.final_state, "scan final_state", state_dtype, device,
                                               {batch, d_inner, d_state}));
  return check_view(args.y, "scan y", dtype, device, {batch, length, d_inner});
}

/// Checks the forward inputs and every gradient of `args`.
inline Status check_scan_backward_args(const ScanBackwardArgs& args, Device device) noexcept {
  ScanForwardArgs inputs = args.forward;
  inputs.y = args.grad_y;  // y is ignored by backward; grad_y takes its shape and place
  inputs.final_state = TensorView{};
  MAMBAKIT_RETURN_IF_ERROR(check_scan_forward_args(inputs, device));
  const std::int64_t batch = inputs.u.shape[0], length = inputs.u.shape[1], d_inner = inputs.u.shape[2];
  const std::int64_t d_state = inputs.A.shape[1];
  const DType dtype = inputs.u.dtype;
  const DType state_dtype = scan_state_dtype(dtype);
  MAMBAKIT_RETURN_IF_ERROR(check_optional_view(args.grad_final_state, "scan grad_final_state",
                                               state_dtype, device, {batch, d_inner, d_state}));
  MAMBAKIT_RETURN_IF_ERROR(
      check_optional_view(args.grad_u, "scan grad_u", dtype, device, {batch, length, d_inner}));
  MAMBAKIT_RETURN_IF_ERROR(
      check_optional_view(args.grad_delta, "scan grad_delta", dtype, device, {batch, length, d_inner}));
  MAMBAKIT_RETURN_IF_ERROR(check_optional_view(args.grad_A, "scan grad_A", state_dtype, device, {d_inner, d_state}));
  MAMBAKIT_RETURN_IF_ERROR(
      check_optional_view(args.grad_B, "scan grad_B", dtype, device, {batch, length, d_state}));
  MAMBAKIT_RETURN_IF_ERROR(
      check_optional_view(args.grad_C, "scan grad_C", dtype, device, {batch, length, d_state}));
  MAMBAKIT_RETURN_IF_ERROR(check_optional_view(args.grad_D, "scan grad_D", state_dtype, device, {d_inner}));
  MAMBAKIT_RETURN_IF_ERROR(
      check_optional_view(args.grad_z, "scan grad_z", dtype, device, {batch, length, d_inner}));
  MAMBAKIT_RETURN_IF_ERROR(
      check_optional_view(args.grad_delta_bias, "scan grad_delta_bias", state_dtype, device, {d_inner}));
  MAMBAKIT_RETURN_IF_ERROR(check_optional_view(args.grad_initial_state, "scan grad_initial_state",
                                               state_dtype, device, {batch, d_inner, d_state}));
  const bool orphan_gradient = (args.grad_D.present() && !inputs.D.present()) ||
                               (args.grad_z.present() && !inputs.z.present()) ||
                               (args.grad_delta_bias.present() && !inputs.delta_bias.present()) ||
                               (args.grad_initial_state.present() && !inputs.initial_state.present());
  if (orphan_gradient) {
    return Status::error(StatusCode::kInvalidArgument,
                         "scan backward: a gradient was requested for an optional input that is absent");
  }
  return Status::success();
}

/// Checks every tensor of a step, taking B, E and N from u and A.
inline Status check_scan_step_args(const ScanStepArgs& args, Device device) noexcept {
  if (!args.u.present() || args.u.rank != 2 || !args.A.present() || args.A.rank != 2) {
    return Status::error(StatusCode::kInvalidArgument,
                         "scan step: u must be a present (B, E) tensor and A a present (E, N) tensor");
  }
  const std::int64_t batch = args.u.shape[0], d_inner = args.u.shape[1], d_state = args.A.shape[1];
  const DType dtype = args.u.dtype;
  const DType state_dtype = scan_state_dtype(dtype);
  MAMBAKIT_RETURN_IF_ERROR(check_view(args.u, "scan step u", dtype, device, {batch, d_inner}));
  MAMBAKIT_RETURN_IF_ERROR(check_view(args.delta, "scan step delta", dtype, device, {batch, d_inner}));
  MAMBAKIT_RETURN_IF_ERROR(check_view(args.A, "scan step A", state_dtype, device, {d_inner, d_state}));
  MAMBAKIT_RETURN_IF_ERROR(check_view(args.B, "scan step B", dtype, device, {batch, d_state}));
  MAMBAKIT_RETURN_IF_ERROR(check_view(args.C, "scan step C", dtype, device, {batch, d_state}));
  MAMBAKIT_RETURN_IF_ERROR(check_optional_view(args.D, "scan step D", state_dtype, device, {d_inner}));
  MAMBAKIT_RETURN_IF_ERROR(check_optional_view(args.z, "scan step z", dtype, device, {batch, d_inner}));
  MAMBAKIT_RETURN_IF_ERROR(
      check_optional_view(args.delta_bias, "scan step delta_bias", state_dtype, device, {d_inner}));
  MAMBAKIT_RETURN_IF_ERROR(
      check_view(args.state, "scan step state", state_dtype, device, {batch, d_inner, d_state}));
  return check_view(args.y, "scan step y", dtype, device, {batch, d_inner});
}

/// Checks that `scan` can run on `device`, `dtype` and `d_state`, and has the requested paths.
inline Status check_scan_backend(const ScanBackend& scan, Device device, DType dtype, std::int64_t d_state,
                                 bool needs_backward, bool needs_step) noexcept {
  ScanCapabilities capabilities;
  scan.capabilities(&capabilities);
  if ((capabilities.devices & device_bit(device.type)) == 0) {
    return Status::error(StatusCode::kUnsupported, "the selected scan backend cannot run on %s",
                         device_type_name(device.type));
  }
  if ((capabilities.dtypes & dtype_bit(dtype)) == 0) {
    return Status::error(StatusCode::kUnsupported, "the selected scan backend does not support dtype %s",
                         dtype_name(dtype));
  }
  if (d_state > capabilities.max_d_state) {
    return Status::error(StatusCode::kUnsupported,
                         "the selected scan backend supports d_state <= %" PRId64 ", got %" PRId64,
                         capabilities.max_d_state, d_state);
  }
  if (needs_backward && !capabilities.backward) {
    return Status::error(StatusCode::kUnsupported, "the selected scan backend has no backward pass");
  }
  if (needs_step && !capabilities.step) {
    return Status::error(StatusCode::kUnsupported, "the selected scan backend has no step (decode) path");
  }
  return Status::success();
}

/// Writes to `*out` the selective-scan kernel that the host chose for `problem`
/// (Context::kernels, see kernel.hpp).
inline Status find_selective_scan(const Context& context, const KernelProblem& problem, ScanBackend** out) noexcept {
  if (context.kernels == nullptr) {
    return Status::error(StatusCode::kInvalidArgument, "the call's context carries no kernel provider");
  }
  Kernel* kernel = nullptr;
  MAMBAKIT_RETURN_IF_ERROR(context.kernels->find(kSelectiveScanKind, problem, &kernel));
  *out = static_cast<ScanBackend*>(kernel);  // registered under kSelectiveScanKind: a ScanBackend
  return Status::success();
}

/// Validates `args`, then runs `scan`'s forward.
inline Status selective_scan_forward(const ScanBackend& scan, const Context& context,
                                     const ScanForwardArgs& args) noexcept {
  MAMBAKIT_RETURN_IF_ERROR(check_scan_forward_args(args, context.device));
  MAMBAKIT_RETURN_IF_ERROR(check_scan_backend(scan, context.device, args.u.dtype, args.A.shape[1], false, false));
  return const_cast<ScanBackend&>(scan).forward(context, args);
}

/// Validates `args`, then runs `scan`'s backward.
inline Status selective_scan_backward(const ScanBackend& scan, const Context& context,
                                      const ScanBackwardArgs& args) noexcept {
  MAMBAKIT_RETURN_IF_ERROR(check_scan_backward_args(args, context.device));
  MAMBAKIT_RETURN_IF_ERROR(
      check_scan_backend(scan, context.device, args.forward.u.dtype, args.forward.A.shape[1], true, false));
  return const_cast<ScanBackend&>(scan).backward(context, args);
}

/// Validates `args`, then runs `scan`'s step.
inline Status selective_scan_step(const ScanBackend& scan, const Context& context, const ScanStepArgs& args) noexcept {
  MAMBAKIT_RETURN_IF_ERROR(check_scan_step_args(args, context.device));
  MAMBAKIT_RETURN_IF_ERROR(check_scan_backend(scan, context.device, args.u.dtype, args.A.shape[1], false, true));
  return const_cast<ScanBackend&>(scan).step(context, args);
}

/// Validates `args`, asks the host for the selective-scan kernel of this (B, L, E, N) problem,
/// and runs its forward. `before_backward`: a backward of the same problem follows (training),
/// so the kernel is chosen among those that have one.
inline Status selective_scan_forward(const Context& context, const ScanForwardArgs& args,
                                     bool before_backward = false) noexcept {
  MAMBAKIT_RETURN_IF_ERROR(check_scan_forward_args(args, context.device));
  ScanBackend* scan = nullptr;
  MAMBAKIT_RETURN_IF_ERROR(find_selective_scan(
      context,
      selective_scan_problem(context.device, args.u.dtype, args.u.shape[0], args.u.shape[1], args.u.shape[2],
                             args.A.shape[1], before_backward),
      &scan));
  return selective_scan_forward(*scan, context, args);
}

/// As the forward above, for the backward (the kernel is chosen for a problem that needs it).
inline Status selective_scan_backward(const Context& context, const ScanBackwardArgs& args) noexcept {
  MAMBAKIT_RETURN_IF_ERROR(check_scan_backward_args(args, context.device));
  const TensorView& u = args.forward.u;
  ScanBackend* scan = nullptr;
  MAMBAKIT_RETURN_IF_ERROR(find_selective_scan(
      context,
      selective_scan_problem(context.device, u.dtype, u.shape[0], u.shape[1], u.shape[2], args.forward.A.shape[1], true),
      &scan));
  return selective_scan_backward(*scan, context, args);
}

/// As the forward above, for one step (a length-1 problem that needs the step path).
inline Status selective_scan_step(const Context& context, const ScanStepArgs& args) noexcept {
  MAMBAKIT_RETURN_IF_ERROR(check_scan_step_args(args, context.device));
  ScanBackend* scan = nullptr;
  MAMBAKIT_RETURN_IF_ERROR(find_selective_scan(
      context,
      selective_scan_problem(context.device, args.u.dtype, args.u.shape[0], 1, args.u.shape[1], args.A.shape[1],
                             false, true),
      &scan));
  return selective_scan_step(*scan, context, args);
}

}  // namespace mambakit::sdk
