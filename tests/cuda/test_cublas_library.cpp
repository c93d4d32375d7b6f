// cuBLAS opened at first use (plugins/common/cuda/cublas_library.hpp) rather than linked: with
// the toolkit installed, as on every machine that builds the CUDA targets, the library opens
// and every entry point the plugins call is found and callable. Needs no GPU.

#include <catch2/catch.hpp>

#include <string>

#include "cublas_library.hpp"

using mambakit::cuda_common::cublas_library;

TEST_CASE("cuBLAS opens at first use with every entry point the plugins call", "[cuda]") {
  const auto& cublas = cublas_library();
  INFO(cublas.error);
  REQUIRE(cublas.error.empty());
  CHECK(cublas.create != nullptr);
  CHECK(cublas.destroy != nullptr);
  CHECK(cublas.set_stream != nullptr);
  CHECK(cublas.set_math_mode != nullptr);
  CHECK(cublas.sgemm != nullptr);
  // Status names need no device: a call through the opened library.
  CHECK(std::string(cublas.status_name(CUBLAS_STATUS_NOT_INITIALIZED)) == "CUBLAS_STATUS_NOT_INITIALIZED");
  CHECK(&cublas_library() == &cublas);  // opened once
}
