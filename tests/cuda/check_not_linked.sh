#!/usr/bin/env sh
# Fails when any of FILES lists a needed library matching PATTERN in its dynamic section.
#   check_not_linked.sh PATTERN FILE...
pattern="$1"
shift
for file in "$@"; do
  if ! readelf -d "${file}" > /dev/null; then
    echo "cannot read the dynamic section of ${file}"
    exit 1
  fi
  if readelf -d "${file}" | grep "(NEEDED)" | grep -q "${pattern}"; then
    echo "${file} links ${pattern}:"
    readelf -d "${file}" | grep "(NEEDED)"
    exit 1
  fi
done
echo "none of the $# files links ${pattern}"
