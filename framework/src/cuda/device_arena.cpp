#include "device_arena.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "mambakit/error.hpp"

namespace mambakit::cuda {

namespace {

constexpr std::size_t kMinimumChunk = std::size_t{8} << 20;

/// The first offset at or after `used` in a chunk starting at `base` whose address is a
/// multiple of `alignment`.
std::size_t aligned_offset(const void* base, std::size_t used, std::size_t alignment) {
  const auto address = reinterpret_cast<std::uintptr_t>(base) + used;
  return used + (alignment - address % alignment) % alignment;
}

}  // namespace

void* DeviceArena::allocate(std::size_t bytes, std::size_t alignment) noexcept {
  if (alignment == 0 || alignment > 4096 || (alignment & (alignment - 1)) != 0) return nullptr;
  if (bytes == 0) bytes = 1;
  if (!chunks_.empty()) {
    Chunk& chunk = chunks_.back();
    const std::size_t offset = aligned_offset(chunk.buffer.data(), chunk.used, alignment);
    if (offset + bytes <= chunk.buffer.bytes()) {
      void* memory = static_cast<char*>(chunk.buffer.data()) + offset;
      live_.push_back({memory, chunks_.size() - 1, chunk.used});
      chunk.used = offset + bytes;
      return memory;
    }
  }
  if (capturing_) return nullptr;
  const std::size_t previous = chunks_.empty() ? 0 : chunks_.back().buffer.bytes();
  const std::size_t size = std::max({kMinimumChunk, 2 * previous, bytes + alignment});
  Chunk chunk;
  try {
    chunk.buffer = DeviceBuffer(size);
  } catch (...) {
    cudaGetLastError();  // clears the failed cudaMalloc's error
    return nullptr;
  }
  chunks_.push_back(std::move(chunk));
  return allocate(bytes, alignment);
}

void DeviceArena::deallocate(void* memory) noexcept {
  if (memory == nullptr || live_.empty() || live_.back().memory != memory) return;
  chunks_[live_.back().chunk].used = live_.back().used_before;
  live_.pop_back();
}

void DeviceArena::reset(cudaStream_t stream) {
  live_.clear();
  if (chunks_.size() > 1) {
    std::size_t total = 0;
    for (const auto& chunk : chunks_) total += chunk.buffer.bytes();
    MAMBAKIT_CUDA_THROW_IF_ERROR(cudaStreamSynchronize(stream));
    chunks_.clear();
    Chunk merged;
    merged.buffer = DeviceBuffer(total);
    chunks_.push_back(std::move(merged));
    ++generation_;
  }
  for (auto& chunk : chunks_) chunk.used = 0;
}

std::size_t DeviceArena::bytes_held() const noexcept {
  std::size_t total = 0;
  for (const auto& chunk : chunks_) total += chunk.buffer.bytes();
  return total;
}

void DeviceArena::throw_out_of_memory(std::size_t bytes, const char* what) const {
  throw Error(fmt::format("out of CUDA device memory: {} bytes for {} (the workspace holds {} bytes{})", bytes, what,
                          bytes_held(), capturing_ ? ", and cannot grow while a CUDA graph is captured" : ""));
}

}  // namespace mambakit::cuda
