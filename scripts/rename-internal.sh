#!/usr/bin/env bash
# The ps__ rename of issue #12, mechanical and repeatable: every function
# libpolysync.a defines that is neither public (include/polysync/*.h) nor
# named ps__ yet is renamed ps_x -> ps__x in every tracked file that names
# it (code, tests, docs, the mutants script), as a whole word. Run it on a
# tree whose BUILD_DIR is built from it; then rebuild: lib.exports passes.
# usage: scripts/rename-internal.sh [BUILD_DIR]   (default: build)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
names=$(scripts/exported-internals.sh "$build/lib/libpolysync.a")
[ -n "$names" ] || { echo "rename-internal: nothing to rename"; exit 0; }
expr=""
args=()
for n in $names; do
  expr+="s/\\b$n\\b/ps__${n#ps_}/g;"
  args+=(-e "$n")
done
mapfile -t files < <(git grep -lw "${args[@]}" -- . ':!*.json')
sed -i -E "$expr" "${files[@]}"
echo "rename-internal: $(wc -w <<<"$names") names in ${#files[@]} files"
