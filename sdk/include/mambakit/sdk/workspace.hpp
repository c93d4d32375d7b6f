#pragma once
/// \file
/// WorkspaceArray: scratch memory from Context::workspace, released when the array goes out
/// of scope. For use inside sdk::guard(): a failed allocation throws std::bad_alloc, which
/// guard() turns into kOutOfMemory.

#include <cstddef>
#include <cstdint>
#include <new>

#include "mambakit/sdk/context.hpp"

namespace mambakit::sdk {

/// `count` uninitialised elements of T from the context's workspace (64-byte aligned).
/// Not copyable or movable; lives within one plugin call.
template <class T>
class WorkspaceArray {
 public:
  WorkspaceArray(const Context& context, std::int64_t count) : allocator_(context.workspace) {
    if (count <= 0) return;
    const std::size_t bytes = static_cast<std::size_t>(count) * sizeof(T);
    data_ = allocator_ != nullptr ? static_cast<T*>(allocator_->allocate(bytes, 64)) : nullptr;
    if (data_ == nullptr) throw std::bad_alloc();
  }
  ~WorkspaceArray() {
    if (data_ != nullptr) allocator_->deallocate(data_);
  }
  WorkspaceArray(const WorkspaceArray&) = delete;
  WorkspaceArray& operator=(const WorkspaceArray&) = delete;

  [[nodiscard]] T* data() const noexcept { return data_; }
  T& operator[](std::int64_t i) const noexcept { return data_[i]; }

 private:
  WorkspaceAllocator* allocator_;
  T* data_ = nullptr;
};

}  // namespace mambakit::sdk
