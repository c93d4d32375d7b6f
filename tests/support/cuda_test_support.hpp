#pragma once
// Shared by the GPU tests (tests/cuda): skipping a test case where no CUDA device exists, a
// checking macro for CUDA runtime calls, owned device memory, and a device workspace for plugin
// calls.
//
// Without a CUDA device a GPU test case ends its process with kSkipReturnCode, which ctest
// reports as skipped (SKIP_RETURN_CODE in tests/cuda/CMakeLists.txt; Catch2 v2 has no SKIP).
// ctest runs every test case in its own process, so each one skips on its own.

#include <cuda_runtime_api.h>

#include <catch2/catch.hpp>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <utility>

#include "mambakit/sdk/context.hpp"
#include "mambakit/sdk/dtype.hpp"
#include "mambakit/sdk/half.hpp"
#include "mambakit/sdk/status.hpp"

namespace mambakit::test {

/// Exit code of a test case skipped for want of a device (SKIP_RETURN_CODE in CMakeLists.txt).
inline constexpr int kSkipReturnCode = 77;

/// The device the GPU tests run on.
inline constexpr sdk::Device kGpu{sdk::DeviceType::kCuda, 0};

/// Requires a plugin call's Status to be success, printing its code and message otherwise.
inline void check_status(const sdk::Status& status) {
  INFO(sdk::status_code_name(status.code) << ": " << status.message);
  REQUIRE(status.ok());
}

/// `v` rounded to `dtype` (f32, f16 or bf16) and back.
inline float round_to(float v, sdk::DType dtype) {
  if (dtype == sdk::DType::kF16) return sdk::f16_to_f32(sdk::f32_to_f16(v));
  if (dtype == sdk::DType::kBF16) return sdk::bf16_to_f32(sdk::f32_to_bf16(v));
  return v;
}

inline bool cuda_device_present() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

/// Ends the process with kSkipReturnCode when no CUDA device is usable.
inline void require_cuda_device() {
  if (cuda_device_present()) return;
  std::printf("no CUDA device: skipped\n");
  std::fflush(stdout);
  std::exit(kSkipReturnCode);
}

inline void check_cuda(cudaError_t error, const char* what) {
  INFO(what << ": " << cudaGetErrorString(error));
  REQUIRE(error == cudaSuccess);
}

/// One device allocation (at least one byte), freed with its owner; move-only.
class DeviceMemory {
 public:
  DeviceMemory() = default;
  explicit DeviceMemory(std::size_t bytes) : bytes_(bytes) {
    check_cuda(cudaMalloc(&data_, bytes == 0 ? 1 : bytes), "cudaMalloc");
  }
  DeviceMemory(DeviceMemory&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}
  DeviceMemory& operator=(DeviceMemory&& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(bytes_, other.bytes_);
    return *this;
  }
  DeviceMemory(const DeviceMemory&) = delete;
  DeviceMemory& operator=(const DeviceMemory&) = delete;
  ~DeviceMemory() {
    if (data_ != nullptr) cudaFree(data_);
  }

  [[nodiscard]] void* data() const noexcept { return data_; }
  [[nodiscard]] std::size_t bytes() const noexcept { return bytes_; }

 private:
  void* data_ = nullptr;
  std::size_t bytes_ = 0;
};

/// Device scratch memory for plugin calls: cudaMalloc per request (256-byte aligned, the most
/// the plugins ask for), with a count of blocks still held. deallocate() frees with cudaFree,
/// which waits for the work queued on the device, so the memory is stream-ordered trivially.
class DeviceWorkspace final : public sdk::WorkspaceAllocator {
 public:
  DeviceWorkspace() = default;
  DeviceWorkspace(const DeviceWorkspace&) = delete;
  DeviceWorkspace& operator=(const DeviceWorkspace&) = delete;
  ~DeviceWorkspace() = default;

  void* allocate(std::size_t bytes, std::size_t alignment) noexcept override {
    void* memory = nullptr;
    if (alignment > 256 || cudaMalloc(&memory, bytes == 0 ? 1 : bytes) != cudaSuccess) return nullptr;
    ++live_;
    return memory;
  }
  void deallocate(void* memory) noexcept override {
    if (memory == nullptr) return;
    --live_;
    cudaFree(memory);
  }
  [[nodiscard]] std::ptrdiff_t live() const noexcept { return live_; }

 private:
  std::ptrdiff_t live_ = 0;
};

}  // namespace mambakit::test

/// REQUIREs that a CUDA runtime call succeeded, naming it and the error otherwise.
#define CUDA_REQUIRE(expr) ::mambakit::test::check_cuda((expr), #expr)

namespace mambakit::test {

/// A non-blocking CUDA stream owned by a test scope (destroyed with it); converts to
/// cudaStream_t.
class TestStream {
 public:
  TestStream() { CUDA_REQUIRE(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking)); }
  ~TestStream() {
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }
  TestStream(const TestStream&) = delete;
  TestStream& operator=(const TestStream&) = delete;
  operator cudaStream_t() const { return stream_; }  // NOLINT: used as the stream it owns

 private:
  cudaStream_t stream_ = nullptr;
};

}  // namespace mambakit::test
