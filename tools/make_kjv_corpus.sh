#!/usr/bin/env bash
# Writes the King James Bible (public domain) as plain text, one verse per line without verse
# references, from Debian's bible-kjv package: the training corpus of the bundled model.
# Usage: tools/make_kjv_corpus.sh OUTPUT.txt
set -euo pipefail
output="${1:?usage: tools/make_kjv_corpus.sh OUTPUT.txt}"
if ! command -v bible >/dev/null; then
  apt-get install -y -qq bible-kjv >/dev/null
fi
mkdir -p "$(dirname "${output}")"
bible -f "Gen1:1-Rev22:21" | sed -E 's/^[0-9A-Za-z]+[0-9]+:[0-9]+ //' > "${output}.tmp"
mv "${output}.tmp" "${output}"
echo "wrote $(wc -c < "${output}") bytes to ${output}" >&2
