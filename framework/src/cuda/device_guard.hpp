#pragma once
// DeviceGuard: makes a CUDA device current for a scope and restores the previous one.

#include "cuda_check.hpp"

namespace mambakit::cuda {

class DeviceGuard {
 public:
  /// Makes device `index` current. Throws on failure.
  explicit DeviceGuard(int index) {
    MAMBAKIT_CUDA_THROW_IF_ERROR(cudaGetDevice(&previous_));
    if (previous_ != index) MAMBAKIT_CUDA_THROW_IF_ERROR(cudaSetDevice(index));
    changed_ = previous_ != index;
  }
  ~DeviceGuard() {
    if (changed_) cudaSetDevice(previous_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
  bool changed_ = false;
};

}  // namespace mambakit::cuda
