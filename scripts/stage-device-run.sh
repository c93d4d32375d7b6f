#!/usr/bin/env bash
# Stages a built tree for a GPU machine that has the CUDA driver but none of the Debian
# libraries the binaries link (Boost.Program_options, fmt, utf8proc, libgomp): .device-run/
# (kept out of git through .git/info/exclude) receives BUILD_DIR's bin/ and lib/, its ctest
# files (same relative paths), and those libraries in .device-run/deps.
#
# On the GPU machine, from the repository root (the ctest files and RUNPATHs hold this
# checkout's absolute path, hence the link):
#   mkdir -p "$(dirname CHECKOUT)" && ln -sfn "$PWD" CHECKOUT && ln -sfn .device-run/build build
#   LD_LIBRARY_PATH=$PWD/.device-run/deps:/usr/local/cuda/lib64 bash scripts/cuda-checks.sh build/release LOGS
#
# Usage: scripts/stage-device-run.sh [BUILD_DIR]    (build/release by default)
set -euo pipefail
cd "$(dirname "$0")/.."
build="${1:-build/release}"
stage=".device-run"
# The device is an H200 (sm_90): a tree configured earlier for other architectures would run
# JIT-compiled PTX there, or not at all, and its benchmark figures would not be the kernels'.
architectures=$(sed -n 's/^CMAKE_CUDA_ARCHITECTURES:[A-Z]*=//p' "${build}/CMakeCache.txt")
if ! grep -qwE '90|90a|native|all|all-major' <<< "${architectures//;/ }"; then
  echo "stage-device-run: ${build}/CMakeCache.txt has CMAKE_CUDA_ARCHITECTURES='${architectures}'," \
       "which does not include 90 (H200); reconfigure with -DCMAKE_CUDA_ARCHITECTURES=90 and rebuild" >&2
  exit 1
fi
grep -qx "/${stage}/" .git/info/exclude || echo "/${stage}/" >> .git/info/exclude
rm -rf "${stage}" && mkdir -p "${stage}/${build}" "${stage}/deps"
cp -a "${build}/bin" "${build}/lib" "${stage}/${build}/"
(cd "${build}" && find . -path ./CMakeFiles -prune -o \
  \( -name CTestTestfile.cmake -o -name "*_tests-*.cmake" -o -name "*_include-*.cmake" \) -print) |
  while read -r file; do
    mkdir -p "${stage}/${build}/$(dirname "${file}")"
    cp "${build}/${file}" "${stage}/${build}/${file}"
  done
for lib in libboost_program_options.so.1.74.0 libfmt.so.9 libutf8proc.so.2 libgomp.so.1; do
  cp -L "/lib/x86_64-linux-gnu/${lib}" "${stage}/deps/"
done
du -sh "${stage}"
