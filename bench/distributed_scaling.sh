#!/usr/bin/env bash
# Data-parallel scaling on one machine: 2 ranks x 1 thread (mpirun, one core each) against
# 1 rank x 2 threads (OpenMP, pinned), the same global batch per step, at the kjv and 130m
# shapes (random init, a generated corpus: speed does not depend on the text). Prints each
# run's last log line: tokens/s over the run, and the ranks' allreduce time in the last step
# and how much of it backward did not hide. The 2-rank runs go twice: buckets of 16 MiB sent
# while backward goes on (the default), and one bucket at the end of backward (4096 MiB).
# Usage: bench/distributed_scaling.sh [BUILD_DIR] [STEPS]     (default build/release, 6)
set -euo pipefail
build="${1:-build/release}"
steps="${2:-6}"
cli="$(cd "$build" && pwd)/bin/mambakit"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

python3 - "$work/corpus.txt" <<'PY'
import random, sys
random.seed(1)
words = "and the lord spake unto moses saying speak unto the children of israel".split()
with open(sys.argv[1], "w") as out:
    out.write(" ".join(random.choice(words) for _ in range(400000)))
PY

run_shape() {  # name d_model n_layer vocab batch_size seq_len
  local name="$1" d_model="$2" n_layer="$3" vocab="$4" batch="$5" seq_len="$6"
  cat > "$work/$name.json" <<JSON
{"model": {"task": "causal_lm", "d_model": $d_model, "n_layer": $n_layer, "d_state": 16, "vocab_size": $vocab,
           "tie_embeddings": true},
 "train_data": "$work/corpus.txt", "tokenizer": "byte", "seq_len": $seq_len, "batch_size": $batch,
 "steps": $steps, "warmup": 1, "eval_every": 100000, "save_every": 100000, "log_every": 1, "seed": 1}
JSON
  echo "== $name: 1 rank x 2 threads, grad_accum 2"
  OMP_PROC_BIND=close OMP_PLACES=cores "$cli" train --config "$work/$name.json" --set threads=2 --set grad_accum=2 \
    --output-dir "$work/$name-one" 2>&1 | grep "^step $steps/"
  for bucket_mb in 16 4096; do
    echo "== $name: 2 ranks x 1 thread, grad_accum 1, bucket_mb $bucket_mb"
    mpirun --oversubscribe --allow-run-as-root --bind-to core -np 2 "$cli" train --config "$work/$name.json" \
      --set threads=1 --set grad_accum=1 --set bucket_mb=$bucket_mb --output-dir "$work/$name-two-$bucket_mb" 2>&1 |
      grep "^step $steps/"
  done
}

run_shape kjv 256 6 257 8 256
run_shape 130m 768 24 50280 1 256
