#pragma once
// Whole-sequence projections on the GPU through cuBLAS, for the in-tree CUDA plugins' forward
// (prefill) paths, and the checked f32 GEMM that their backward (cublas_linear_backward.hpp)
// shares: y = x W^T + bias with an f32 GEMM (CUBLAS_DEFAULT_MATH: no TF32, so results
// agree with the CPU's f32 GEMM to rounding). 16-bit weights are widened to f32 into the call's
// workspace first. cuBLAS is not used on decode paths: creating a handle and its internal
// workspace are not legal inside CUDA graph capture (see few_rows.cuh for those paths).
// cuBLAS itself is opened at first use (cublas_library.hpp). Host code only; include it from
// .cpp files of CUDA builds.
//
// Dimensions: M rows, K in features, N out features.

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <climits>
#include <cstdint>
#include <cstring>
#include <map>

#include "cublas_library.hpp"
#include "mambakit/sdk/util/cuda_status.hpp"
#include "linear_launch.hpp"
#include "mambakit/sdk/context.hpp"
#include "mambakit/sdk/status.hpp"
#include "mambakit/sdk/workspace.hpp"

namespace mambakit::cuda_common {

/// A kDeviceError Status "<component>: <what> failed at <file>:<line>: <message> (<name>)".
inline sdk::Status cublas_error_status(const char* component, cublasStatus_t status, const char* what,
                                       const char* file, int line) noexcept {
  const char* slash = std::strrchr(file, '/');
  if (slash != nullptr) file = slash + 1;
  const CublasLibrary& cublas = cublas_library();  // loaded: a call returned this status
  return sdk::Status::error(sdk::StatusCode::kDeviceError, "%s: %s failed at %s:%d: %s (%s)", component, what, file,
                            line, cublas.status_string(status), cublas.status_name(status));
}

}  // namespace mambakit::cuda_common

/// Returns a kDeviceError Status naming `component`, the call, file and line when `expr` (a
/// cublasStatus_t) is not CUBLAS_STATUS_SUCCESS.
#define MAMBAKIT_CUBLAS_CHECK(component, expr)                                                              \
  do {                                                                                                      \
    const cublasStatus_t mambakit_cublas_status_ = (expr);                                                  \
    if (mambakit_cublas_status_ != CUBLAS_STATUS_SUCCESS) {                                                 \
      return ::mambakit::cuda_common::cublas_error_status((component), mambakit_cublas_status_, #expr, __FILE__, \
                                                          __LINE__);                                        \
    }                                                                                                       \
  } while (false)

namespace mambakit::cuda_common {

/// The calling thread's cuBLAS handle for the current device, created on first use (default
/// math: no TF32) and destroyed when the thread ends. Each plugin module has its own cache.
/// kUnsupported naming `component` and the library when cuBLAS cannot be loaded.
inline sdk::Status thread_cublas_handle(const char* component, cublasHandle_t* out) {
  const CublasLibrary& cublas = cublas_library();
  if (!cublas.error.empty()) {
    return sdk::Status::error(sdk::StatusCode::kUnsupported, "%s: %s", component, cublas.error.c_str());
  }
  struct Handles {
    std::map<int, cublasHandle_t> by_device;
    Handles() = default;
    Handles(const Handles&) = delete;
    Handles& operator=(const Handles&) = delete;
    ~Handles() {
      for (const auto& [device, handle] : by_device) cublas_library().destroy(handle);
    }
  };
  thread_local Handles handles;
  int device = 0;
  MAMBAKIT_CUDA_CHECK(component, cudaGetDevice(&device));
  const auto found = handles.by_device.find(device);
  if (found != handles.by_device.end()) {
    *out = found->second;
    return sdk::Status::success();
  }
  cublasHandle_t handle = nullptr;
  MAMBAKIT_CUBLAS_CHECK(component, cublas.create(&handle));
  const cublasStatus_t mode = cublas.set_math_mode(handle, CUBLAS_DEFAULT_MATH);
  if (mode != CUBLAS_STATUS_SUCCESS) {
    cublas.destroy(handle);
    MAMBAKIT_CUBLAS_CHECK(component, mode);
  }
  handles.by_device.emplace(device, handle);
  *out = handle;
  return sdk::Status::success();
}

/// Enqueues the column-major f32 GEMM C (m, n; leading dimension ldc) = op_a(A) op_b(B) +
/// beta C on the context's stream with the calling thread's handle: cublasSgemm's arguments,
/// checked to fit its int sizes (kUnsupported naming `component` otherwise). The row-major
/// callers below read each row-major (R, S) matrix as a column-major (S, R) one: its transpose.
inline sdk::Status column_major_sgemm(const char* component, const sdk::Context& context, cublasOperation_t op_a,
                                      cublasOperation_t op_b, std::int64_t m, std::int64_t n, std::int64_t k,
                                      const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float beta,
                                      float* c, std::int64_t ldc) {
  for (const std::int64_t size : {m, n, k, lda, ldb, ldc}) {
    if (size > INT_MAX) {
      return sdk::Status::error(sdk::StatusCode::kUnsupported,
                                "%s: a GEMM of %lld x %lld by %lld exceeds cuBLAS's int sizes", component,
                                static_cast<long long>(m), static_cast<long long>(k), static_cast<long long>(n));
    }
  }
  cublasHandle_t handle = nullptr;
  MAMBAKIT_RETURN_IF_ERROR(thread_cublas_handle(component, &handle));
  const CublasLibrary& cublas = cublas_library();
  MAMBAKIT_CUBLAS_CHECK(component, cublas.set_stream(handle, sdk::cuda::stream_of(context)));
  const float one = 1.f;
  MAMBAKIT_CUBLAS_CHECK(component, cublas.sgemm(handle, op_a, op_b, static_cast<int>(m), static_cast<int>(n),
                                               static_cast<int>(k), &one, a, static_cast<int>(lda), b,
                                               static_cast<int>(ldb), &beta, c, static_cast<int>(ldc)));
  return sdk::Status::success();
}

/// Enqueues y (M, N; row stride ldy) = x (M, K; row stride ldx) W^T (+ bias (N) when present)
/// on the context's stream, W (N, K) contiguous f32, f16 or bf16, on the current device.
/// A 16-bit W is widened into workspace memory that is handed back before the GEMM has run
/// (the workspace is stream-ordered). Sizes must fit cuBLAS's int arguments.
inline sdk::Status linear_gemm(const char* component, const sdk::Context& context, const float* x, std::int64_t ldx,
                               DeviceParam weight, DeviceParam bias, float* y, std::int64_t ldy, std::int64_t m,
                               std::int64_t k, std::int64_t n) {
  const cudaStream_t stream = sdk::cuda::stream_of(context);
  const bool widen = weight.dtype != sdk::DType::kF32;
  sdk::WorkspaceArray<float> widened(context, widen ? n * k : 0);
  const float* w = static_cast<const float*>(weight.data);
  if (widen) {
    MAMBAKIT_CUDA_CHECK(component, launch_widen_to_f32(weight, widened.data(), n * k, stream));
    w = widened.data();
  }
  // Row-major y = x W^T is column-major y^T (N, M) = W^T (N, K; W read as a (K, N) column-major
  // matrix, transposed) times x^T (K, M).
  MAMBAKIT_RETURN_IF_ERROR(
      column_major_sgemm(component, context, CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, w, k, x, ldx, 0.f, y, ldy));
  MAMBAKIT_CUDA_CHECK(component, launch_add_bias(y, ldy, bias, m, n, stream));
  return sdk::Status::success();
}

}  // namespace mambakit::cuda_common
