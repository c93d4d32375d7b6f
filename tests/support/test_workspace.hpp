#pragma once
// A WorkspaceAllocator for tests that call plugins directly (without a Model): each request is
// a fresh aligned_alloc, and the number of blocks still held is counted so a test can check
// that a plugin call gave back everything it took.

#include <cstddef>
#include <cstdlib>

#include "mambakit/sdk/context.hpp"

namespace mambakit::test {

class TestWorkspace final : public sdk::WorkspaceAllocator {
 public:
  TestWorkspace() = default;
  TestWorkspace(const TestWorkspace&) = delete;
  TestWorkspace& operator=(const TestWorkspace&) = delete;
  ~TestWorkspace() = default;

  void* allocate(std::size_t bytes, std::size_t alignment) noexcept override {
    // aligned_alloc wants a size that is a multiple of the alignment (and not zero).
    const std::size_t rounded = (bytes + alignment - 1) / alignment * alignment;
    void* memory = std::aligned_alloc(alignment, rounded == 0 ? alignment : rounded);
    if (memory != nullptr) ++live_;
    return memory;
  }

  void deallocate(void* memory) noexcept override {
    if (memory == nullptr) return;
    --live_;
    std::free(memory);
  }

  /// Blocks allocated and not yet deallocated.
  [[nodiscard]] std::ptrdiff_t live() const noexcept { return live_; }

 private:
  std::ptrdiff_t live_ = 0;
};

}  // namespace mambakit::test
