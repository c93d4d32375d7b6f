#!/usr/bin/env bash
# Installs what is missing, then configures (once) and builds (incrementally) a preset.
# Usage: scripts/build.sh [PRESET]   (default: release; see CMakePresets.json)
set -euo pipefail
cd "$(dirname "$0")/.."
preset="${1:-release}"

bash scripts/install-deps.sh
if [ ! -f "build/${preset}/CMakeCache.txt" ]; then
  cmake --preset "${preset}" >/dev/null
fi
cmake --build --preset "${preset}"
