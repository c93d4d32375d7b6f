#pragma once
/// \file
/// CUDA errors as sdk::Status, and running a call on the context's device, for plugins with
/// CUDA paths (the host formats its own CUDA errors with cuda_error_status() too). Host code
/// only (no kernels); include it from the .cpp files that call the CUDA runtime, never from a
/// header that CPU-only code includes. Needs the CUDA toolkit's headers.

#include <cuda_runtime_api.h>

#include <cstring>

#include "mambakit/sdk/context.hpp"
#include "mambakit/sdk/guard.hpp"
#include "mambakit/sdk/status.hpp"
#include "mambakit/sdk/tensor_view.hpp"

namespace mambakit::sdk::cuda {

/// A kDeviceError Status "<component>: <what> failed at <file>:<line>: <message> (<name>)".
/// `file` is shortened to its last path component. Also resets the runtime's last error (a
/// failed call leaves it set), so that the next launch check reports only its own failure.
inline sdk::Status cuda_error_status(const char* component, cudaError_t error, const char* what, const char* file,
                                     int line) noexcept {
  (void)cudaGetLastError();
  const char* slash = std::strrchr(file, '/');
  if (slash != nullptr) file = slash + 1;
  return sdk::Status::error(sdk::StatusCode::kDeviceError, "%s: %s failed at %s:%d: %s (%s)", component, what, file,
                            line, cudaGetErrorString(error), cudaGetErrorName(error));
}

/// Runs `body` (returning Status) with context.device current, then makes the caller's device
/// current again. Exceptions (a failed workspace allocation) become a Status. Only
/// cudaGetDevice and cudaSetDevice are called, both legal while a stream is being captured.
template <class Body>
sdk::Status on_device(const char* component, const sdk::Context& context, Body&& body) noexcept {
  return sdk::guard([&]() -> sdk::Status {
    int previous = 0;
    cudaError_t error = cudaGetDevice(&previous);
    if (error != cudaSuccess) return cuda_error_status(component, error, "cudaGetDevice", __FILE__, __LINE__);
    const int wanted = context.device.index;
    if (previous != wanted) {
      error = cudaSetDevice(wanted);
      if (error != cudaSuccess) return cuda_error_status(component, error, "cudaSetDevice", __FILE__, __LINE__);
    }
    const sdk::Status status = body();
    if (previous != wanted) cudaSetDevice(previous);
    return status;
  });
}

/// kUnsupported naming `component` unless each of the `count` parameters is f32, f16 or bf16
/// and the activation `x` is f32: the only types the in-tree CUDA paths compute with (f64 runs
/// stay on the CPU).
inline sdk::Status check_cuda_dtypes(const char* component, const sdk::TensorView* params, int count,
                                     const sdk::TensorView& x) {
  for (int i = 0; i < count; ++i) {
    const sdk::DType dtype = params[i].dtype;
    if (dtype != sdk::DType::kF32 && dtype != sdk::DType::kF16 && dtype != sdk::DType::kBF16) {
      return sdk::Status::error(sdk::StatusCode::kUnsupported,
                                "%s on cuda: parameter %d is %s; f32, f16 or bf16 is required", component, i,
                                sdk::dtype_name(dtype));
    }
  }
  if (x.dtype != sdk::DType::kF32) {
    return sdk::Status::error(sdk::StatusCode::kUnsupported, "%s on cuda: the input is %s; f32 is required",
                              component, sdk::dtype_name(x.dtype));
  }
  return sdk::Status::success();
}

/// The context's stream as a cudaStream_t (nullptr: the default stream).
inline cudaStream_t stream_of(const sdk::Context& context) noexcept {
  return static_cast<cudaStream_t>(context.stream);
}

}  // namespace mambakit::sdk::cuda

/// Returns a kDeviceError Status naming `component` (a const char*), the call, file and line
/// when `expr` (a cudaError_t) is not cudaSuccess.
#define MAMBAKIT_CUDA_CHECK(component, expr)                                                             \
  do {                                                                                                   \
    const cudaError_t mambakit_cuda_error_ = (expr);                                                     \
    if (mambakit_cuda_error_ != cudaSuccess) {                                                           \
      return ::mambakit::sdk::cuda::cuda_error_status((component), mambakit_cuda_error_, #expr, __FILE__, \
                                                        __LINE__);                                       \
    }                                                                                                    \
  } while (false)
