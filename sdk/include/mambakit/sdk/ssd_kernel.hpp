#pragma once
/// \file
/// SsdKernel: the kernels of kind "ssd", the state-space-dual scan of Mamba-2 (Dao & Gu 2024),
/// forward, backward and one-token step.
///
/// Dimension legend: B batch, L length, H heads, P head_dim, G groups, N d_state.
/// Head h reads group g(h) = h / (H / G) of B and C. Per head h and step t, with dt already
/// positive (the caller applies its bias, softplus and clamp):
///   S_t = exp(dt_t * A[h]) * S_{t-1} + dt_t * x_t B_t^T        (S is P x N per head)
///   y_t = S_t C_t + D[h] * x_t                                 (D optional)
/// S_{-1} is the initial state (zeros when absent). A is a negative scalar per head.
///
/// Tensor conventions (checked by ssd_calls.hpp before a kernel runs): x, y and their gradients
/// are (B, L, H, P) and B, C and theirs (B, L, G, N), each with its two inner dimensions
/// contiguous (a row of H*P or G*N elements) and free outer strides, so that x, B and C can be
/// slices of one wider projection; dt is (B, L, H) with a contiguous last dimension; A and D
/// are (H); states are contiguous (B, H, P, N). All share one dtype, f32 or f64.

#include <cstdint>

#include "mambakit/sdk/context.hpp"
#include "mambakit/sdk/kernel.hpp"
#include "mambakit/sdk/status.hpp"
#include "mambakit/sdk/tensor_view.hpp"

namespace mambakit::sdk {

/// The kernel kind of the SSD scan.
inline constexpr const char* kSsdKind = "ssd";

/// Positions of an SSD problem's sizes in KernelProblem::dims.
enum SsdDim : std::int32_t {
  kSsdBatch = 0,
  kSsdLength = 1,
  kSsdHeads = 2,
  kSsdHeadDim = 3,
  kSsdGroups = 4,
  kSsdDState = 5,
  kSsdDims = 6
};

/// The sizes of an SSD problem.
struct SsdShape {
  bool valid = false;  ///< all sizes >= 1 and G divides H (when read from a KernelProblem)
  std::int64_t batch = 0, length = 0, heads = 0, head_dim = 0, groups = 0, d_state = 0;
};

/// The KernelProblem of an SSD scan of `shape`.
inline KernelProblem ssd_problem(Device device, DType dtype, const SsdShape& shape, bool needs_backward = false,
                                 bool needs_step = false) noexcept {
  KernelProblem problem;
  problem.device = device;
  problem.dtype = dtype;
  problem.n_dims = kSsdDims;
  problem.dims[kSsdBatch] = shape.batch;
  problem.dims[kSsdLength] = shape.length;
  problem.dims[kSsdHeads] = shape.heads;
  problem.dims[kSsdHeadDim] = shape.head_dim;
  problem.dims[kSsdGroups] = shape.groups;
  problem.dims[kSsdDState] = shape.d_state;
  problem.needs_backward = needs_backward;
  problem.needs_step = needs_step;
  return problem;
}

/// The sizes of `problem` (invalid unless it carries kSsdDims positive sizes with G dividing H).
inline SsdShape ssd_shape(const KernelProblem& problem) noexcept {
  SsdShape shape;
  if (problem.n_dims != kSsdDims) return shape;
  shape.batch = problem.dims[kSsdBatch];
  shape.length = problem.dims[kSsdLength];
  shape.heads = problem.dims[kSsdHeads];
  shape.head_dim = problem.dims[kSsdHeadDim];
  shape.groups = problem.dims[kSsdGroups];
  shape.d_state = problem.dims[kSsdDState];
  shape.valid = shape.batch >= 1 && shape.length >= 1 && shape.heads >= 1 && shape.head_dim >= 1 &&
                shape.groups >= 1 && shape.d_state >= 1 && shape.heads % shape.groups == 0;
  return shape;
}

/// Arguments of the SSD scan over whole sequences.
struct SsdForwardArgs {
  std::uint32_t struct_size = sizeof(SsdForwardArgs);
  TensorView x;              ///< in  (B, L, H, P)
  TensorView dt;             ///< in  (B, L, H), > 0
  TensorView A;              ///< in  (H), < 0
  TensorView B;              ///< in  (B, L, G, N)
  TensorView C;              ///< in  (B, L, G, N)
  TensorView D;              ///< in  (H), optional skip connection
  TensorView initial_state;  ///< in  (B, H, P, N), optional: S_{-1}
  TensorView final_state;    ///< out (B, H, P, N), optional: S_{L-1} is written here
  TensorView y;              ///< out (B, L, H, P), overwritten
};

/// Arguments of the backward scan, of the objective whose gradients are grad_y and
/// grad_final_state. Every gradient output accumulates (+=); an absent one is not computed,
/// and one of an absent optional input must be absent too. The kernel recomputes what it needs
/// from the forward inputs; the result does not depend on the thread count.
struct SsdBackwardArgs {
  std::uint32_t struct_size = sizeof(SsdBackwardArgs);
  SsdForwardArgs forward;         ///< the forward inputs; forward.y and forward.final_state are ignored
  TensorView grad_y;              ///< in  (B, L, H, P)
  TensorView grad_final_state;    ///< in  (B, H, P, N), optional (zero when absent)
  TensorView grad_x;              ///< out (B, L, H, P) +=
  TensorView grad_dt;             ///< out (B, L, H) +=
  TensorView grad_A;              ///< out (H) +=
  TensorView grad_B;              ///< out (B, L, G, N) +=
  TensorView grad_C;              ///< out (B, L, G, N) +=
  TensorView grad_D;              ///< out (H) +=
  TensorView grad_initial_state;  ///< out (B, H, P, N) +=
};

/// Arguments of one step (decode): the same recurrence for a single token, state in place.
struct SsdStepArgs {
  std::uint32_t struct_size = sizeof(SsdStepArgs);
  TensorView x;      ///< in  (B, H, P)
  TensorView dt;     ///< in  (B, H)
  TensorView A;      ///< in  (H)
  TensorView B;      ///< in  (B, G, N)
  TensorView C;      ///< in  (B, G, N)
  TensorView D;      ///< in  (H), optional
  TensorView state;  ///< in/out (B, H, P, N): S_{t-1} in, S_t out
  TensorView y;      ///< out (B, H, P)
};

/// An SSD implementation: a Kernel registered under kSsdKind. Its score() reads the problem's
/// dims in SsdDim order and returns 0 for what it cannot run: a device, a dtype, or a backward
/// or step it lacks. Methods may run from several threads at once: a kernel keeps no per-call
/// state in members. Callers go through ssd_calls.hpp, which validates the arguments first.
/// Append-only: new virtual functions go after the last one, with an ABI minor bump.
class SsdKernel : public Kernel {
 public:
  /// The scan over whole sequences, with Context::n_threads threads.
  virtual Status forward(const Context& context, const SsdForwardArgs& args) noexcept = 0;
  /// Its backward (see SsdBackwardArgs); kUnsupported when the kernel has none.
  virtual Status backward(const Context& context, const SsdBackwardArgs& args) noexcept = 0;
  /// One token (see SsdStepArgs); kUnsupported when the kernel has no step.
  virtual Status step(const Context& context, const SsdStepArgs& args) noexcept = 0;
};

}  // namespace mambakit::sdk
