#!/usr/bin/env bash
# One sitting of the decode measurement in docs/BENCHMARKS.md (130m shape, batch 1, 2 threads,
# pinned): each round measures the memory bandwidth, mambakit's decode with f32, bf16, f16 and
# int8 weights, the bandwidth again, and (with --peer) the PyTorch decode of the same model; it
# prints each weight type's share of the round's bound (triad bandwidth over the bytes a step
# reads: 521.6 MB with f32 weights, 265.6 MB with 16-bit ones, 142.0 MB with int8 ones (groups of
# 128: 136.4 MB of int8 values, scales and the f32 parameters), state included).
#
# Usage: scripts/decode-sitting.sh [ROUNDS] [BUILD_DIR] [--peer]   (7, build/release)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-7}"
bin="${2:-build/release}/bin"
peer="${3:-}"
export OMP_PROC_BIND=close OMP_PLACES=cores

bandwidth() {  # prints "TRIAD READ" in GB/s
  "${bin}/memory_bandwidth" 2 | sed -E 's/.*median ([0-9.]+) GB.*/\1/' | tr '\n' ' '
}

for round in $(seq 1 "${rounds}"); do
  before=$(bandwidth)
  decode=$("${bin}/mambakit" bench --shape 130m --scan fused --mode decode --threads 2 --batch 1 \
    --dtype f32,bf16,f16,int8 --repeat 7 --decode-tokens 32 | awk '/^decode/ {printf "%s ", $7}')
  after=$(bandwidth)
  torch=""
  if [ "${peer}" = "--peer" ]; then
    torch=$(cd tools && /usr/bin/python3 torch_decode_bench.py --shape 130m --batch 1 --threads 2 --steps 16 \
      --repeat 3 | sed -E 's/.*"tokens_per_s": ([0-9.]+).*/\1/')
  fi
  echo "$(date -u +%H:%M:%S) ${before} ${after} ${decode} ${torch}" | awk '{
    triad = ($2 + $4) / 2; read = ($3 + $5) / 2
    printf "%s triad %.1f read-only %.1f GB/s | f32 %.1f tok/s (%.0f%% of bound) | bf16 %.1f (%.0f%%) | f16 %.1f (%.0f%%)",
      $1, triad, read, $6, 100 * $6 * 521.6e6 / (triad * 1e9), $7, 100 * $7 * 265.6e6 / (triad * 1e9),
      $8, 100 * $8 * 265.6e6 / (triad * 1e9)
    printf " | int8 %.1f (%.0f%%, %.2fx bf16)", $9, 100 * $9 * 142.0e6 / (triad * 1e9), $9 / $7
    if (NF >= 10) printf " | PyTorch f32 %.1f tok/s", $10
    printf "\n" }'
done
