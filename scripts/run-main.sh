#!/usr/bin/env bash
# The README's first command: set up, build, and run mambakit's main job: streaming text
# generation with the bundled default model (models/default). Extra arguments are passed to
# `mambakit generate` and replace the defaults below (e.g. --prompt "And the LORD said" --seed 7).
set -euo pipefail
cd "$(dirname "$0")/.."
log=build/run-main-build.log
mkdir -p build
echo "mambakit: building (release; the log is in ${log}) ..." >&2
if ! bash scripts/build.sh release > "${log}" 2>&1; then
  tail -n 40 "${log}" >&2
  echo "mambakit: the build failed; the whole log is in ${log}" >&2
  exit 1
fi
export OMP_PROC_BIND="${OMP_PROC_BIND:-close}" OMP_PLACES="${OMP_PLACES:-cores}"

# The defaults, each unless the caller gives that option.
defaults=(--prompt "In the beginning" --max-new-tokens 300 --temperature 0.8 --top-k 40
          --repetition-penalty 1.1 --seed 1)
args=()
for ((i = 0; i < ${#defaults[@]}; i += 2)); do
  option="${defaults[i]}"
  given=false
  for argument in "$@"; do
    if [[ "${argument}" == "${option}" || "${argument}" == "${option}="* ]]; then given=true; fi
  done
  if [[ "${given}" == false ]]; then args+=("${option}" "${defaults[i + 1]}"); fi
done
stream=(--stream)
for argument in "$@"; do
  if [[ "${argument}" == --stream || "${argument}" == --format* ]]; then stream=(); fi
done
exec build/release/bin/mambakit generate "${args[@]}" "${stream[@]}" "$@"
