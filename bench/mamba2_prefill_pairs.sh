#!/usr/bin/env bash
# Mamba-2 against Mamba-1 prefill (docs/BENCHMARKS.md, "Mamba-2"): mamba2-130m with ssd/chunked
# and 130m with scan/fused, L = 2048, batch 1, 2 pinned threads, run alternately pair by pair.
# Prints each pair's ms per prefill (the bench's median of 5) and Mamba-2's speed relative to
# Mamba-1 in that pair, then the median of those ratios: on a machine whose speed drifts, only
# a pair run back to back compares.
# Usage: bench/mamba2_prefill_pairs.sh [ROUNDS] [LENGTH] (defaults 10 and 2048).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-10}"
length="${2:-2048}"
cli=build/release/bin/mambakit
export OMP_PROC_BIND=close OMP_PLACES=cores
ms_per_run() {  # the last column of the bench's prefill row
  "$cli" bench --threads 2 --shape "$1" --scan "$2" --mode prefill --length "$length" --repeat 5 |
    awk '/^prefill /{print $NF}'
}
echo "round  mamba2-130m ms  130m ms  mamba2 speed / mamba1 speed"
ratios=()
for round in $(seq "$rounds"); do
  m2=$(ms_per_run mamba2-130m chunked)
  m1=$(ms_per_run 130m fused)
  ratio=$(awk -v a="$m2" -v b="$m1" 'BEGIN {printf "%.3f", b / a}')
  printf "%5d %15.1f %8.1f %8s\n" "$round" "$m2" "$m1" "$ratio"
  ratios+=("$ratio")
done
printf "%s\n" "${ratios[@]}" | sort -n |
  awk '{r[NR] = $1} END {m = NR % 2 ? r[(NR + 1) / 2] : (r[NR / 2] + r[NR / 2 + 1]) / 2; printf "median ratio over %d pairs: %.3f\n", NR, m}'
