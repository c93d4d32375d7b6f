#!/usr/bin/env bash
# The GPU checks, for a machine with an NVIDIA GPU and an already built tree (the CUDA targets
# need the CUDA toolkit at build time; CI machines have no GPU and never run this):
#   - every test labelled `cuda`, each test case in its own process (a CUDA fault in one
#     cannot poison the next), with the failures' output;
#   - the scan benchmark (effective bandwidth of scan/cuda against the device's memory);
#   - whole-model prefill and decode on the device at the 130m and 1.4b shapes;
#   - whole-model training steps (forward, backward, AdamW) on the device at the 130m shape.
# Every log goes to LOG_DIR; a short summary is printed at the end.
#
# Usage: scripts/cuda-checks.sh [BUILD_DIR] [LOG_DIR]    (build/release and logs/cuda by default)
set -uo pipefail
cd "$(dirname "$0")/.."
build="${1:-build/release}"
logs="${2:-logs/cuda}"
mkdir -p "${logs}"
bin="${build}/bin"

nvidia-smi > "${logs}/nvidia-smi.txt" 2>&1 || echo "cuda-checks: nvidia-smi failed" >&2

echo "== tests labelled cuda"
ctest --test-dir "${build}" -L cuda --output-on-failure --timeout 600 > "${logs}/ctest-cuda.txt" 2>&1
tests_status=$?
grep -E "tests passed|tests failed|Failed|\*\*\*|Skipped" "${logs}/ctest-cuda.txt" | tail -40

echo "== scan/cuda bandwidth"
timeout 300 "${bin}/cuda_scan_bench" > "${logs}/cuda_scan_bench.txt" 2>&1 || echo "cuda_scan_bench failed: $?"
cat "${logs}/cuda_scan_bench.txt"

echo "== whole model on the device"
if "${bin}/mambakit" bench --help 2>&1 | grep -q -- "--device"; then
  for shape in 130m 1.4b; do
    timeout 300 "${bin}/mambakit" bench --device cuda --shape "${shape}" --mode both --batch 1,8 \
      --length 512,2048 --dtype f32,bf16 --repeat 10 --decode-tokens 64 \
      > "${logs}/bench-${shape}.txt" 2>&1 || echo "bench ${shape} failed: $?"
    cat "${logs}/bench-${shape}.txt"
  done
  timeout 300 "${bin}/mambakit" bench --device cuda --shape 130m --mode train --batch 8 --length 512 \
    --dtype f32 --repeat 5 > "${logs}/bench-train-130m.txt" 2>&1 || echo "bench train failed: $?"
  cat "${logs}/bench-train-130m.txt"
else
  echo "this build's mambakit has no --device option" | tee "${logs}/bench-130m.txt"
fi
exit "${tests_status}"
