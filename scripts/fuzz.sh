#!/usr/bin/env bash
# Fuzzes mambakit's readers of untrusted input with libFuzzer (clang, ASan + UBSan), the fuzz
# targets of tests/fuzz. Each target starts from its committed corpus (tests/fuzz/corpus/) and
# grows a working corpus under build/fuzz/corpus/; inputs that crash land in
# build/fuzz/findings/<target>/ (copy each, once fixed, to tests/fuzz/corpus/<target>/ as
# regression-<what>, so the test suite replays it). Logs: build/fuzz/logs/<target>.log, whose
# last lines give the executions ("Done N runs") and the coverage ("cov:").
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]   (default 600 s, every target)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-600}"
shift || true

bash scripts/install-deps.sh
packages=(clang libclang-rt-14-dev libomp-dev)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "fuzz: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
[ -f build/fuzz/CMakeCache.txt ] || cmake --preset fuzz >/dev/null
cmake --build build/fuzz --target mambakit_fuzz_targets -j2

targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
  targets=(safetensors npy model_config run_config tokenizer_json tokenizer_text token_input inference_state plugin_info)
fi
mkdir -p build/fuzz/logs
for target in "${targets[@]}"; do
  corpus="build/fuzz/corpus/${target}"
  findings="build/fuzz/findings/${target}"
  mkdir -p "${corpus}" "${findings}"
  echo "fuzz: ${target} for ${seconds} s" >&2
  status=0
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "build/fuzz/bin/fuzz_${target}" "${corpus}" "tests/fuzz/corpus/${target}" \
    -max_total_time="${seconds}" -max_len=65536 -timeout=20 -rss_limit_mb=4096 -print_final_stats=1 \
    -artifact_prefix="${findings}/" > "build/fuzz/logs/${target}.log" 2>&1 || status=$?
  grep -E '^Done|^#[0-9]+.*DONE' "build/fuzz/logs/${target}.log" >&2 || true
  if [ "${status}" -ne 0 ]; then
    echo "fuzz: ${target} found a problem (exit ${status}); see build/fuzz/logs/${target}.log and ${findings}/" >&2
  fi
done
