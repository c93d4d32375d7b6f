#pragma once
// DeviceArena: the WorkspaceAllocator of a CUDA model's calls (Context::workspace), also used
// by the model for its own activations. A bump allocator over device memory, reset at the
// start of every model call: every allocation of a call is released by the next reset().
// Stream-ordered by construction: all work of a model runs on its one stream, and each model
// call waits for its results before returning, so memory handed out again after reset() or
// deallocate() is only touched by work queued after the earlier users.
//
// Growth: when the current chunk is full, allocate() adds a chunk (cudaMalloc); the next
// reset() replaces several chunks by one of their total size and increments generation(), so
// steady-state calls allocate nothing. While capturing (set_capturing(true)) allocate() never
// calls cudaMalloc, which stream capture forbids: it returns nullptr when the chunks are full.
// Addresses are deterministic: the same sequence of requests after reset() gets the same
// pointers while generation() is unchanged, which CUDA graphs of the decode step rely on.

#include <cstddef>
#include <cstdint>
#include <vector>

#include "device_buffer.hpp"
#include "mambakit/sdk/context.hpp"

namespace mambakit::cuda {

class DeviceArena final : public sdk::WorkspaceAllocator {
 public:
  DeviceArena() = default;
  DeviceArena(const DeviceArena&) = delete;
  DeviceArena& operator=(const DeviceArena&) = delete;

  void* allocate(std::size_t bytes, std::size_t alignment) noexcept override;
  /// Releases `memory` at once when it is the latest live allocation (last in, first out);
  /// anything else is released by the next reset().
  void deallocate(void* memory) noexcept override;

  /// Releases every allocation. When the last calls needed more than one chunk, waits for
  /// `stream`, frees them and allocates one chunk of their total size (generation() + 1).
  /// Throws mambakit::Error on a CUDA failure.
  void reset(cudaStream_t stream);

  /// `count` elements of T (256-byte aligned), or throws mambakit::Error naming `what`.
  template <class T>
  T* take(std::int64_t count, const char* what) {
    void* memory = allocate(static_cast<std::size_t>(count > 0 ? count : 1) * sizeof(T), 256);
    if (memory == nullptr) throw_out_of_memory(static_cast<std::size_t>(count) * sizeof(T), what);
    return static_cast<T*>(memory);
  }

  void set_capturing(bool capturing) noexcept { capturing_ = capturing; }
  /// Changes whenever chunks are freed (see reset()).
  [[nodiscard]] std::uint64_t generation() const noexcept { return generation_; }
  /// Device bytes held.
  [[nodiscard]] std::size_t bytes_held() const noexcept;

 private:
  struct Chunk {
    DeviceBuffer buffer;
    std::size_t used = 0;
  };
  struct Live {
    void* memory;
    std::size_t chunk;
    std::size_t used_before;
  };
  [[noreturn]] void throw_out_of_memory(std::size_t bytes, const char* what) const;

  std::vector<Chunk> chunks_;
  std::vector<Live> live_;
  bool capturing_ = false;
  std::uint64_t generation_ = 0;
};

}  // namespace mambakit::cuda
