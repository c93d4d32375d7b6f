#!/usr/bin/env bash
# The README's second command: set up, build, and run the whole test suite (all but the
# tests labelled `long`; run those with `ctest --preset long`).
# Usage: scripts/run-tests.sh [PRESET]   (release by default, asan for the sanitizers)
set -euo pipefail
cd "$(dirname "$0")/.."
preset="${1:-release}"
bash scripts/build.sh "${preset}"
ctest --preset "${preset}"
