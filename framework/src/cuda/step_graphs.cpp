#include "step_graphs.hpp"

#include <fmt/format.h>

#include <exception>

#include "cuda_check.hpp"
#include "mambakit/error.hpp"

namespace mambakit::cuda {

StepGraphs::~StepGraphs() {
  for (auto& [key, graph] : graphs_) cudaGraphExecDestroy(graph.exec);
}

void StepGraphs::drop(const Key& key) {
  auto found = graphs_.find(key);
  if (found != graphs_.end()) {
    cudaGraphExecDestroy(found->second.exec);
    graphs_.erase(found);
  }
  warmed_.erase(key);
}

void StepGraphs::run(const Key& key, cudaStream_t stream, DeviceArena& arena, const std::function<void()>& enqueue) {
  auto found = graphs_.find(key);
  if (found != graphs_.end() && found->second.generation != arena.generation()) {
    drop(key);
    found = graphs_.end();
  }
  if (found != graphs_.end()) {
    MAMBAKIT_CUDA_THROW_IF_ERROR(cudaGraphLaunch(found->second.exec, stream));
    return;
  }
  if (warmed_.count(key) == 0) {
    if (warmed_.size() >= kMaxWarmed) warmed_.clear();  // keys of states long gone
    arena.reset(stream);
    enqueue();
    warmed_[key] = arena.generation();
    return;
  }
  capture(key, stream, arena, enqueue);
}

void StepGraphs::capture(const Key& key, cudaStream_t stream, DeviceArena& arena, const std::function<void()>& enqueue) {
  if (graphs_.size() >= kMaxGraphs) {
    for (auto& [old_key, graph] : graphs_) cudaGraphExecDestroy(graph.exec);
    graphs_.clear();
  }
  arena.reset(stream);
  MAMBAKIT_CUDA_THROW_IF_ERROR(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  arena.set_capturing(true);
  auto failed = [&](const char* reason) {
    warmed_.erase(key);
    return Error(fmt::format("capturing the decode step (batch {}) in a CUDA graph failed: {} (a model created with "
                             "ModelOptions::cuda_graphs = false runs its steps uncaptured)",
                             key.batch, reason));
  };
  try {
    enqueue();
  } catch (const std::exception& error) {
    arena.set_capturing(false);
    cudaGraph_t broken = nullptr;
    cudaStreamEndCapture(stream, &broken);
    if (broken != nullptr) cudaGraphDestroy(broken);
    cudaGetLastError();
    throw failed(error.what());
  }
  arena.set_capturing(false);
  cudaGraph_t graph = nullptr;
  const cudaError_t ended = cudaStreamEndCapture(stream, &graph);
  if (ended != cudaSuccess) {
    if (graph != nullptr) cudaGraphDestroy(graph);
    cudaGetLastError();
    throw failed(fmt::format("cudaStreamEndCapture: {}: {}", cudaGetErrorName(ended), cudaGetErrorString(ended)).c_str());
  }
  cudaGraphExec_t exec = nullptr;
  const cudaError_t instantiated = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  MAMBAKIT_CUDA_THROW_IF_ERROR(instantiated);
  graphs_[key] = Graph{exec, arena.generation()};
  MAMBAKIT_CUDA_THROW_IF_ERROR(cudaGraphLaunch(exec, stream));
}

}  // namespace mambakit::cuda
