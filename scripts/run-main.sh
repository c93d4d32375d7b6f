#!/usr/bin/env bash
# The README's first command: set up, build, and run mambakit's main job: streaming text
# generation with the bundled default model (models/default). Extra arguments are passed to
# `mambakit generate` (e.g. --prompt "And the LORD said" --seed 7).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh release
export OMP_PROC_BIND="${OMP_PROC_BIND:-close}" OMP_PLACES="${OMP_PLACES:-cores}"
exec build/release/bin/mambakit generate --prompt "In the beginning" --max-new-tokens 300 \
  --temperature 0.8 --top-k 40 --repetition-penalty 1.1 --seed 1 --stream "$@"
