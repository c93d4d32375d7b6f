#pragma once
/// \file
/// Kernels: compute routines of a named kind (the selective scan is kind "selective_scan"),
/// registered by plugins, chosen by the host per problem, called by mixers.
///
/// The host never interprets a kind: it keeps every registered kernel of the kind, asks each
/// one to score the problem a mixer describes, and hands back the chosen one (the user's named
/// choice, or for `auto` the highest score). What a kind's kernels compute, and what the
/// problem's dims mean, is written in the kind's own SDK header (scan_backend.hpp for
/// "selective_scan"); a kind's kernels derive from Kernel and add the kind's methods.

#include <cstdint>

#include "mambakit/sdk/dtype.hpp"
#include "mambakit/sdk/status.hpp"

namespace mambakit::sdk {

/// Most sizes a KernelProblem carries.
inline constexpr std::int32_t kMaxKernelDims = 8;

/// A problem as a mixer describes it when it asks for a kernel: where it runs, its element
/// type, and up to kMaxKernelDims sizes in the order the kind's header gives.
struct KernelProblem {
  std::uint32_t struct_size = sizeof(KernelProblem);
  Device device{};
  DType dtype = DType::kF32;
  std::int32_t n_dims = 0;
  std::int64_t dims[kMaxKernelDims] = {};
  bool needs_backward = false;  ///< the caller will run the kind's backward
  bool needs_step = false;      ///< the caller will run the kind's one-token step
};

/// Base of every kernel. Created by a plugin factory (see registrar.hpp); owned by the host,
/// which deletes it through the virtual destructor before unloading the plugin. A kernel keeps
/// no per-call state in members: its methods may run from several threads at once.
/// Append-only: new virtual functions go after the last one, with an ABI minor bump.
class Kernel {
 public:
  virtual ~Kernel() = default;

  /// How well this kernel suits `problem` on this machine: 0 means it cannot run it at all;
  /// otherwise higher is faster. Thread-safe; never fails.
  virtual std::int32_t score(const KernelProblem& problem) const noexcept = 0;
};

/// The host's kernel choice, handed to every compute call through Context::kernels.
/// Implemented by the host; thread-safe.
class KernelProvider {
 public:
  /// Writes to `*out` the kernel of `kind` (e.g. "selective_scan") chosen for `problem`: the
  /// one the user named for the kind, or the highest-scoring one. The kernel is owned by the
  /// host and stays valid for the duration of the calling plugin call. On failure (no kernel
  /// of the kind is loaded, or none can run the problem) `*out` is untouched and the Status
  /// names the kind and each candidate's score.
  virtual Status find(const char* kind, const KernelProblem& problem, Kernel** out) noexcept = 0;

 protected:
  ~KernelProvider() = default;
};

}  // namespace mambakit::sdk
