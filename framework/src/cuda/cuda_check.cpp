#include "cuda_check.hpp"

#include "mambakit/error.hpp"
#include "mambakit/sdk/util/cuda_status.hpp"

namespace mambakit::cuda {

void check(cudaError_t error, const char* call, const char* file, int line) {
  if (error == cudaSuccess) return;
  throw Error(sdk::cuda::cuda_error_status("host", error, call, file, line).message);
}

}  // namespace mambakit::cuda
