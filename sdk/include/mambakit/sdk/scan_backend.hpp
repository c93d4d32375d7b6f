#pragma once
/// \file
/// ScanBackend: the kernels of kind "selective_scan" (the Mamba-1 selective scan), forward,
/// backward and one-token step.
///
/// Dimension legend: B batch, L length, E d_inner (channels), N d_state.
/// Per channel e and step t, with dt = delta_softplus ? softplus(delta + delta_bias)
///                                                    : delta + delta_bias:
///   h_t = exp(dt * A[e]) * h_{t-1} + dt * B_t * u_t          (h is an N-vector per channel)
///   y_t = <h_t, C_t> + D[e] * u_t,   then y_t *= silu(z_t) when z is present.
/// softplus(v) = log(1 + exp(v)), and = v for v > 20. h_{-1} is the initial state (zeros when
/// absent).
///
/// Tensor conventions (checked by the host before a backend is called, see scan_checks.hpp):
/// every view's last dimension has stride 1, outer strides are free; u, delta, B, C, z, y,
/// grad_y and the input gradients share one dtype, the problem dtype; A, D, delta_bias, states
/// and their gradients are f32 (f64 when the problem dtype is f64).

#include <cstdint>

#include "mambakit/sdk/context.hpp"
#include "mambakit/sdk/dtype.hpp"
#include "mambakit/sdk/kernel.hpp"
#include "mambakit/sdk/status.hpp"
#include "mambakit/sdk/tensor_view.hpp"

namespace mambakit::sdk {

/// What a backend can do, whatever the problem size.
struct ScanCapabilities {
  std::uint32_t struct_size = sizeof(ScanCapabilities);
  std::uint32_t devices = 0;      ///< mask of device_bit(DeviceType)
  std::uint32_t dtypes = 0;       ///< mask of dtype_bit(DType) accepted as the problem dtype
  std::int64_t max_d_state = 0;   ///< largest N supported
  bool backward = false;          ///< implements backward()
  bool step = false;              ///< implements step()
};

/// The kernel kind of the selective scan.
inline constexpr const char* kSelectiveScanKind = "selective_scan";

/// Positions of a selective-scan problem's sizes in KernelProblem::dims.
enum SelectiveScanDim : std::int32_t { kScanBatch = 0, kScanLength = 1, kScanDInner = 2, kScanDState = 3, kScanDims = 4 };

/// The KernelProblem of a (B, L, E, N) selective scan.
inline KernelProblem selective_scan_problem(Device device, DType dtype, std::int64_t batch, std::int64_t length,
                                            std::int64_t d_inner, std::int64_t d_state, bool needs_backward = false,
                                            bool needs_step = false) noexcept {
  KernelProblem problem;
  problem.device = device;
  problem.dtype = dtype;
  problem.n_dims = kScanDims;
  problem.dims[kScanBatch] = batch;
  problem.dims[kScanLength] = length;
  problem.dims[kScanDInner] = d_inner;
  problem.dims[kScanDState] = d_state;
  problem.needs_backward = needs_backward;
  problem.needs_step = needs_step;
  return problem;
}

/// The sizes of a selective-scan problem, read from a KernelProblem.
struct SelectiveScanShape {
  bool valid = false;  ///< the problem carries the kind's kScanDims sizes, all >= 1
  std::int64_t batch = 0, length = 0, d_inner = 0, d_state = 0;
};

/// The sizes of `problem` (invalid when it does not carry kScanDims positive sizes).
inline SelectiveScanShape selective_scan_shape(const KernelProblem& problem) noexcept {
  SelectiveScanShape shape;
  if (problem.n_dims != kScanDims) return shape;
  shape.batch = problem.dims[kScanBatch];
  shape.length = problem.dims[kScanLength];
  shape.d_inner = problem.dims[kScanDInner];
  shape.d_state = problem.dims[kScanDState];
  shape.valid = shape.batch >= 1 && shape.length >= 1 && shape.d_inner >= 1 && shape.d_state >= 1;
  return shape;
}

/// Arguments of a forward scan over a whole sequence.
struct ScanForwardArgs {
  std::uint32_t struct_size = sizeof(ScanForwardArgs);
  TensorView u;              ///< in  (B, L, E)
  TensorView delta;          ///< in  (B, L, E), before bias and softplus
  TensorView A;              ///< in  (E, N), the negative real diagonal (-exp(A_log))
  TensorView B;              ///< in  (B, L, N)
  TensorView C;              ///< in  (B, L, N)
  TensorView D;              ///< in  (E), optional skip connection
  TensorView z;              ///< in  (B, L, E), optional gate
  TensorView delta_bias;     ///< in  (E), optional
  bool delta_softplus = true;
  TensorView initial_state;  ///< in  (B, E, N), optional: h_{-1}
  TensorView final_state;    ///< out (B, E, N), optional: h_{L-1} is written here
  TensorView y;              ///< out (B, L, E), overwritten
};

/// Arguments of the backward scan. Gradient outputs accumulate (+=) into what the caller
/// passes; an absent gradient view is not computed. The backend recomputes what it needs from
/// the forward inputs.
struct ScanBackwardArgs {
  std::uint32_t struct_size = sizeof(ScanBackwardArgs);
  ScanForwardArgs forward;       ///< the forward inputs; forward.y and forward.final_state are ignored
  TensorView grad_y;             ///< in  (B, L, E)
  TensorView grad_final_state;   ///< in  (B, E, N), optional
  TensorView grad_u;             ///< out (B, L, E) +=
  TensorView grad_delta;         ///< out (B, L, E) +=, with respect to delta before bias and softplus
  TensorView grad_A;             ///< out (E, N) +=
  TensorView grad_B;             ///< out (B, L, N) +=
  TensorView grad_C;             ///< out (B, L, N) +=
  TensorView grad_D;             ///< out (E) +=, only when forward.D is present
  TensorView grad_z;             ///< out (B, L, E) +=, only when forward.z is present
  TensorView grad_delta_bias;    ///< out (E) +=, only when forward.delta_bias is present
  TensorView grad_initial_state; ///< out (B, E, N) +=, only when forward.initial_state is present
};

/// Arguments of one recurrent step (decode): the same math for a single time step.
struct ScanStepArgs {
  std::uint32_t struct_size = sizeof(ScanStepArgs);
  TensorView u;           ///< in  (B, E)
  TensorView delta;       ///< in  (B, E)
  TensorView A;           ///< in  (E, N)
  TensorView B;           ///< in  (B, N)
  TensorView C;           ///< in  (B, N)
  TensorView D;           ///< in  (E), optional
  TensorView z;           ///< in  (B, E), optional
  TensorView delta_bias;  ///< in  (E), optional
  bool delta_softplus = true;
  TensorView state;       ///< in/out (B, E, N): h_{t-1} in, h_t out
  TensorView y;           ///< out (B, E)
};

/// A selective-scan implementation: a Kernel registered under kSelectiveScanKind, whose
/// score() reads the problem's dims in SelectiveScanDim order. Created by a plugin factory
/// (see registrar.hpp); owned by the host, which deletes it through the virtual destructor
/// before unloading the plugin. Methods may run from several threads at once unless a backend
/// documents otherwise: a backend keeps no per-call state in members.
/// Append-only: new virtual functions go after the last one, with an ABI minor bump.
class ScanBackend : public Kernel {
 public:

  /// Fills `out` with what this backend supports. Never fails.
  virtual void capabilities(ScanCapabilities* out) const noexcept = 0;

  /// Runs the forward scan. Inputs have been validated by the host; on failure the outputs
  /// are unspecified and the returned Status says why.
  virtual Status forward(const Context& context, const ScanForwardArgs& args) noexcept = 0;

  /// Runs the backward scan (see ScanBackwardArgs). Returns kUnsupported when
  /// capabilities().backward is false.
  virtual Status backward(const Context& context, const ScanBackwardArgs& args) noexcept = 0;

  /// Runs one recurrent step (see ScanStepArgs). Returns kUnsupported when
  /// capabilities().step is false.
  virtual Status step(const Context& context, const ScanStepArgs& args) noexcept = 0;
};

}  // namespace mambakit::sdk
