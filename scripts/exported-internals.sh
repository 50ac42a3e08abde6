#!/usr/bin/env bash
# Prints the global symbols LIB (libpolysync.a) defines that are neither
# declared in include/polysync/*.h (the public API) nor named ps__ (the
# internal cross-file prefix, STYLE.md), one per line. Used by the
# lib.exports test (tests/CMakeLists.txt) and scripts/rename-internal.sh.
# usage: scripts/exported-internals.sh LIB [INCLUDE_DIR]
set -euo pipefail
lib=$1
include=${2:-$(dirname "$0")/../include/polysync}
public=$(grep -ohE '\bps_[A-Za-z0-9_]+[[:space:]]*\(' "$include"/*.h | sed 's/[[:space:]]*($//' | sort -u)
# __odr_asan.*: AddressSanitizer's one-definition-rule markers, one per
# instrumented global (the ASan build), not symbols of ours.
defined=$(nm -g --defined-only "$lib" | awk 'NF == 3 && $2 ~ /^[TDBRCVW]$/ {print $3}' | sort -u)
[ -n "$defined" ] || { echo "exported-internals: no symbols in $lib" >&2; exit 2; }
printf '%s\n' "$defined" | { grep -v -e '^ps__' -e '^__odr_asan[._]' || true; } |
  comm -23 - <(printf '%s\n' "$public")
