#pragma once
// The host's checking macro for its CUDA runtime calls: a failure becomes a mambakit::Error
// with the same message the plugins' Status carries (sdk/util/cuda_status.hpp): the call, the
// source location and the CUDA error. (Plugins return a Status with MAMBAKIT_CUDA_CHECK; the
// host throws.)

#include <cuda_runtime_api.h>

namespace mambakit::cuda {

/// Throws mambakit::Error "host: `call` failed at file:line: description (NAME)" unless `error`
/// is cudaSuccess.
void check(cudaError_t error, const char* call, const char* file, int line);

}  // namespace mambakit::cuda

#define MAMBAKIT_CUDA_THROW_IF_ERROR(call) ::mambakit::cuda::check((call), #call, __FILE__, __LINE__)
