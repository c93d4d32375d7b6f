#!/usr/bin/env bash
# Runs the threaded code under ThreadSanitizer: the determinism tests (every CPU kernel on 1 and
# 2 threads: forward, decode, generation, training), the scan, SSD and kernel tests. Built with
# clang and LLVM's OpenMP runtime, whose Archer tool tells TSan about OpenMP's synchronisation
# (without it every parallel region reports false races). Output: build/tsan/tsan.log.
# Usage: scripts/tsan.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
packages=(clang libomp-dev)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
[ -f build/tsan/CMakeCache.txt ] || cmake --preset tsan >/dev/null
cmake --build build/tsan --target test_model test_scan test_ssd test_kernels -j2

archer="$(find /usr/lib/llvm-*/lib -name libarcher.so | head -n 1)"
export OMP_TOOL_LIBRARIES="${archer}"
export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 ignore_noninstrumented_modules=1"
status=0
{
  build/tsan/bin/test_model "*on 1 and 2 threads*" || status=$?
  build/tsan/bin/test_scan || status=$?
  build/tsan/bin/test_ssd || status=$?
  build/tsan/bin/test_kernels || status=$?
} > build/tsan/tsan.log 2>&1
grep -E "ThreadSanitizer|test cases|All tests passed" build/tsan/tsan.log >&2 || true
exit "${status}"
