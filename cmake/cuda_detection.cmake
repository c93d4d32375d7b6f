# Decides MAMBAKIT_WITH_CUDA from MAMBAKIT_CUDA (AUTO|ON|OFF). CPU-only builds never need the
# CUDA toolkit: with AUTO, a missing nvcc simply turns the CUDA targets off.
include(CheckLanguage)
set(MAMBAKIT_WITH_CUDA OFF)
if(MAMBAKIT_CUDA STREQUAL "OFF")
  message(STATUS "mambakit: CUDA targets disabled (MAMBAKIT_CUDA=OFF)")
else()
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    # Kernels are built for the H100/H200 generation (sm_90) unless the user chooses
    # (-DCMAKE_CUDA_ARCHITECTURES=..., or the CUDAARCHS environment variable).
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES AND NOT DEFINED ENV{CUDAARCHS})
      set(CMAKE_CUDA_ARCHITECTURES 90 CACHE STRING "CUDA architectures to build kernels for")
    endif()
    enable_language(CUDA)
    # CMake before 3.26 knows no C++20 flag for nvcc, yet CUDA sources of targets that require
    # cxx_std_20 (every plugin, through the SDK) need one; nvcc has had it since CUDA 12.
    if(NOT DEFINED CMAKE_CUDA20_STANDARD_COMPILE_OPTION AND CMAKE_CUDA_COMPILER_VERSION VERSION_GREATER_EQUAL 12.0)
      set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
      set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
    endif()
    find_package(CUDAToolkit REQUIRED)
    set(MAMBAKIT_WITH_CUDA ON)
    message(STATUS "mambakit: CUDA targets enabled (${CMAKE_CUDA_COMPILER})")
  elseif(MAMBAKIT_CUDA STREQUAL "ON")
    message(FATAL_ERROR "MAMBAKIT_CUDA=ON but no CUDA compiler was found; install the CUDA toolkit "
                        "or configure with -DMAMBAKIT_CUDA=AUTO or OFF")
  else()
    message(STATUS "mambakit: no CUDA compiler found, CUDA targets disabled")
  endif()
endif()
