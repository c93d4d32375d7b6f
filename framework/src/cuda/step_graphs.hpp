#pragma once
// StepGraphs: CUDA graphs of a model's decode step, one per key (batch size, the state's
// device memory, the model's kernel selection). The first run of a key is queued normally (a warm-up that
// also grows the workspace to its steady size), the second is captured into a graph and
// launched, later ones replay the graph. A graph bakes in every device address the step
// touches: the workspace's (valid while the arena's generation is unchanged), the state's and
// the step's input ids and output logits (fixed per key). A graph whose arena generation is
// out of date is dropped and its key starts over with a warm-up run. Replaying runs the very
// kernels of the uncaptured step on the same inputs, so results are equal bit for bit.

#include <cstdint>
#include <functional>
#include <map>
#include <tuple>

#include "device_arena.hpp"

namespace mambakit::cuda {

class StepGraphs {
 public:
  struct Key {
    std::int64_t batch = 0;
    const void* state = nullptr;
    std::uint64_t kernel_selection = 0;  ///< Model::Impl::kernel_selection: a graph holds the kernels chosen then
    friend bool operator<(const Key& a, const Key& b) {
      return std::tie(a.batch, a.state, a.kernel_selection) < std::tie(b.batch, b.state, b.kernel_selection);
    }
  };

  StepGraphs() = default;
  ~StepGraphs();
  StepGraphs(const StepGraphs&) = delete;
  StepGraphs& operator=(const StepGraphs&) = delete;

  /// Queues `key`'s step on `stream`: `enqueue` (which takes its memory from `arena` after a
  /// reset) runs uncaptured the first time, is captured the second; then the graph is
  /// replayed. Throws mambakit::Error on a CUDA failure; a failed capture is ended and dropped.
  void run(const Key& key, cudaStream_t stream, DeviceArena& arena, const std::function<void()>& enqueue);

 private:
  struct Graph {
    cudaGraphExec_t exec = nullptr;
    std::uint64_t generation = 0;
  };
  static constexpr std::size_t kMaxGraphs = 16;
  static constexpr std::size_t kMaxWarmed = 64;
  void capture(const Key& key, cudaStream_t stream, DeviceArena& arena, const std::function<void()>& enqueue);
  void drop(const Key& key);

  std::map<Key, Graph> graphs_;
  std::map<Key, std::uint64_t> warmed_;  ///< keys run once uncaptured, with the arena generation then
};

}  // namespace mambakit::cuda
