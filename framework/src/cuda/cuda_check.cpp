#include "cuda_check.hpp"

#include <fmt/format.h>

#include "mambakit/error.hpp"

namespace mambakit::cuda {

void check(cudaError_t error, const char* call, const char* file, int line) {
  if (error == cudaSuccess) return;
  throw Error(fmt::format("CUDA error in {} ({}:{}): {}: {}", call, file, line, cudaGetErrorName(error),
                          cudaGetErrorString(error)));
}

}  // namespace mambakit::cuda
