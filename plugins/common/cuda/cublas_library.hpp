#pragma once
// cuBLAS opened at first use (dlopen) instead of linked. A CUDA build's plugins then load, and
// run on the CPU, on machines without the toolkit's libcublas; only the GPU paths that call
// cuBLAS (the prefill and backward projections) need it, and there its absence is a clear
// error naming the library. Host code of CUDA builds only.
//
// The library is libcublas.so.<major version of the headers built against>, looked up by the
// dynamic loader's usual rules (LD_LIBRARY_PATH, the ld.so cache) and then in the toolkit's
// library folder of the build machine (MAMBAKIT_CUBLAS_DIR, set by CMake).

#include <cublas_v2.h>
#include <dlfcn.h>

#include <string>
#include <type_traits>

namespace mambakit::cuda_common {

/// The cuBLAS entry points the in-tree plugins call (null when the library is missing).
struct CublasLibrary {
  decltype(&cublasCreate_v2) create = nullptr;
  decltype(&cublasDestroy_v2) destroy = nullptr;
  decltype(&cublasSetStream_v2) set_stream = nullptr;
  decltype(&cublasSetMathMode) set_math_mode = nullptr;
  decltype(&cublasSgemm_v2) sgemm = nullptr;
  decltype(&cublasGetStatusString) status_string = nullptr;
  decltype(&cublasGetStatusName) status_name = nullptr;
  /// Why the library is unusable ("cannot open ...", "... lacks ..."); empty when it loaded.
  std::string error;
};

/// The library, opened on the first call in each plugin module and never closed.
inline const CublasLibrary& cublas_library() {
  static const CublasLibrary library = [] {
    CublasLibrary cublas;
    const std::string name = "libcublas.so." + std::to_string(CUBLAS_VER_MAJOR);
    void* handle = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
#ifdef MAMBAKIT_CUBLAS_DIR
    if (handle == nullptr) handle = dlopen((std::string(MAMBAKIT_CUBLAS_DIR) + "/" + name).c_str(), RTLD_NOW | RTLD_LOCAL);
#endif
    if (handle == nullptr) {
      const char* why = dlerror();
      cublas.error = "cannot open " + name + " (" + (why != nullptr ? why : "not found") +
                     "): the GPU projections need the CUDA toolkit's cuBLAS";
      return cublas;
    }
    auto find = [&](auto& entry, const char* symbol) {
      entry = reinterpret_cast<std::remove_reference_t<decltype(entry)>>(dlsym(handle, symbol));
      if (entry == nullptr && cublas.error.empty()) cublas.error = name + " lacks " + symbol;
    };
    find(cublas.create, "cublasCreate_v2");
    find(cublas.destroy, "cublasDestroy_v2");
    find(cublas.set_stream, "cublasSetStream_v2");
    find(cublas.set_math_mode, "cublasSetMathMode");
    find(cublas.sgemm, "cublasSgemm_v2");
    find(cublas.status_string, "cublasGetStatusString");
    find(cublas.status_name, "cublasGetStatusName");
    return cublas;
  }();
  return library;
}

}  // namespace mambakit::cuda_common
