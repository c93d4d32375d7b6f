#pragma once
// One checking macro for the host's CUDA runtime calls: a failure becomes a mambakit::Error
// naming the call, the source location and the CUDA error.

#include <cuda_runtime_api.h>

namespace mambakit::cuda {

/// Throws mambakit::Error "CUDA error in `call` (file:line): NAME: description" unless
/// `error` is cudaSuccess.
void check(cudaError_t error, const char* call, const char* file, int line);

}  // namespace mambakit::cuda

#define MAMBAKIT_CUDA_CHECK(call) ::mambakit::cuda::check((call), #call, __FILE__, __LINE__)
