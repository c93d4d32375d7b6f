#pragma once
// Stream: a CUDA stream owned by one object. Created blocking (not cudaStreamNonBlocking), so
// the legacy default stream's copies (the inference state's uploads and downloads) are
// ordered with the work queued on it.

#include <utility>

#include "cuda_check.hpp"

namespace mambakit::cuda {

class Stream {
 public:
  /// A new stream on the current device. Throws on failure.
  Stream() { MAMBAKIT_CUDA_THROW_IF_ERROR(cudaStreamCreate(&stream_)); }
  ~Stream() {
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }
  Stream(Stream&& other) noexcept : stream_(std::exchange(other.stream_, nullptr)) {}
  Stream& operator=(Stream&&) = delete;
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  [[nodiscard]] cudaStream_t get() const noexcept { return stream_; }
  /// Waits until every queued operation has finished. Throws on a CUDA error.
  void synchronize() const { MAMBAKIT_CUDA_THROW_IF_ERROR(cudaStreamSynchronize(stream_)); }

 private:
  cudaStream_t stream_ = nullptr;
};

}  // namespace mambakit::cuda
