#pragma once
/// \file
/// Context: where and how a plugin call executes.

#include <cstddef>
#include <cstdint>

#include "mambakit/sdk/dtype.hpp"

namespace mambakit::sdk {

class KernelProvider;

/// Scratch memory provided by the host for the duration of one call. Implemented by the host.
/// Memory comes from the context's device. Not thread-safe: call it from the calling thread
/// only, not from inside a parallel region.
class WorkspaceAllocator {
 public:
  /// Returns `bytes` bytes aligned to `alignment` (a power of two, at most 4096), or nullptr
  /// when the memory cannot be had. The memory stays valid until deallocate() or the end of the
  /// plugin call, whichever comes first; its contents are uninitialised.
  virtual void* allocate(std::size_t bytes, std::size_t alignment) noexcept = 0;
  /// Returns memory obtained from allocate(). nullptr is ignored.
  virtual void deallocate(void* memory) noexcept = 0;

 protected:
  ~WorkspaceAllocator() = default;
};

/// Execution context handed to every compute call. Plain data; the host owns everything it
/// points to, and keeps it alive for the duration of the call.
struct Context {
  std::uint32_t struct_size = sizeof(Context);
  /// Device the call's tensors live on and the work must run on.
  Device device{};
  /// Opaque accelerator stream (a cudaStream_t for CUDA); nullptr means the default stream.
  /// Ignored on the CPU.
  void* stream = nullptr;
  /// Number of CPU threads the call may use (>= 1).
  std::int32_t n_threads = 1;
  /// Scratch memory for the call; never nullptr when the host makes the call.
  WorkspaceAllocator* workspace = nullptr;
  /// The host's kernel choice (see kernel.hpp): a mixer asks it for the kernel of a kind for
  /// its problem, e.g. through sdk::selective_scan_forward(). Never nullptr when the host
  /// makes the call.
  KernelProvider* kernels = nullptr;
};

}  // namespace mambakit::sdk
