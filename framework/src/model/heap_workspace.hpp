#pragma once
// The host's WorkspaceAllocator for CPU calls: 64-byte aligned blocks, kept after release and
// reused for later requests of at most their size, so steady-state calls do not allocate.

#include <cstddef>
#include <mutex>
#include <vector>

#include "mambakit/sdk/context.hpp"

namespace mambakit::model {

class HeapWorkspace final : public sdk::WorkspaceAllocator {
 public:
  HeapWorkspace() = default;
  ~HeapWorkspace();
  HeapWorkspace(const HeapWorkspace&) = delete;
  HeapWorkspace& operator=(const HeapWorkspace&) = delete;

  void* allocate(std::size_t bytes, std::size_t alignment) noexcept override;
  void deallocate(void* memory) noexcept override;

  /// Bytes held, in use or cached.
  [[nodiscard]] std::size_t bytes_held() const;

 private:
  struct Block {
    void* memory;
    std::size_t bytes;
    bool in_use;
  };
  mutable std::mutex mutex_;
  std::vector<Block> blocks_;
};

}  // namespace mambakit::model
