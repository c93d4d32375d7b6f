#!/usr/bin/env bash
# The README's first command: set up, build, and run mambakit's main job.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh release
exec build/release/bin/mambakit plugins "$@"
