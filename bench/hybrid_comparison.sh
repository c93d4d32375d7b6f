#!/usr/bin/env bash
# The hybrid benchmarks of docs/BENCHMARKS.md ("Hybrid stacks"), in one sitting: prefill at
# L = 2048 of hybrid-130m against mamba2-130m (and Mamba-1's 130m, scan/fused) in alternating
# rounds, decode after a 4096-token context beside the STREAM triad and the read-only stream
# (the memory bound), and the peak RSS of prefill at growing lengths (/usr/bin/time).
# Usage: bench/hybrid_comparison.sh [ROUNDS] (default 3).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"
cli=build/release/bin/mambakit
export OMP_PROC_BIND=close OMP_PLACES=cores
bench() { "$cli" bench --threads 2 "$@" | grep -E "^(prefill|decode) |reads per step"; }
for round in $(seq "$rounds"); do
  echo "== round $round: prefill L=2048"
  for shape in hybrid-130m:chunked mamba2-130m:chunked 130m:fused; do
    echo "${shape%:*}"
    bench --shape "${shape%:*}" --scan "${shape#*:}" --mode prefill --length 2048 --repeat 5
  done
done
for round in $(seq "$rounds"); do
  echo "== round $round: decode after 4096 tokens"
  build/release/bin/memory_bandwidth 2 | grep -E "triad|read-only"
  bench --shape hybrid-130m --scan chunked --mode decode --context 4096 --decode-tokens 64 --repeat 5
done
echo "== peak RSS of one prefill (with a warm-up run), by length"
for shape in hybrid-130m mamba2-130m; do
  for length in 1024 4096 16384; do
    /usr/bin/time -f "$shape L=$length: peak RSS %M KiB, %e s" "$cli" bench --shape "$shape" --mode prefill \
      --length "$length" --repeat 1 --threads 2 --scan chunked > /dev/null
  done
done
