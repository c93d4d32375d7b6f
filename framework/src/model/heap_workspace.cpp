#include "heap_workspace.hpp"

#include <cstdlib>

namespace mambakit::model {

HeapWorkspace::~HeapWorkspace() {
  for (auto& block : blocks_) std::free(block.memory);
}

void* HeapWorkspace::allocate(std::size_t bytes, std::size_t alignment) noexcept {
  if (alignment > 4096 || (alignment & (alignment - 1)) != 0) return nullptr;
  std::lock_guard lock(mutex_);
  Block* best = nullptr;
  for (auto& block : blocks_) {
    if (!block.in_use && block.bytes >= bytes && (best == nullptr || block.bytes < best->bytes)) best = &block;
  }
  if (best != nullptr) {
    best->in_use = true;
    return best->memory;
  }
  const std::size_t rounded = (bytes + 4095) / 4096 * 4096;
  void* memory = std::aligned_alloc(4096, rounded == 0 ? 4096 : rounded);
  if (memory == nullptr) return nullptr;
  blocks_.push_back({memory, rounded, true});
  return memory;
}

void HeapWorkspace::deallocate(void* memory) noexcept {
  if (memory == nullptr) return;
  std::lock_guard lock(mutex_);
  for (auto& block : blocks_) {
    if (block.memory == memory) block.in_use = false;
  }
}

std::size_t HeapWorkspace::bytes_held() const {
  std::lock_guard lock(mutex_);
  std::size_t total = 0;
  for (const auto& block : blocks_) total += block.bytes;
  return total;
}

}  // namespace mambakit::model
