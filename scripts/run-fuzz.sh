#!/usr/bin/env bash
# Builds the libFuzzer targets with clang and runs each for a fixed time over
# the seed corpus in fuzz/corpus/. Skips (with a note) when clang is absent.
# A fixed -seed keeps a run repeatable (CI must not flake); FUZZ_SEED=0 lets
# libFuzzer pick one, for longer exploratory runs.
# usage: run-fuzz.sh BUILD_DIR SECONDS
set -euo pipefail
build=${1:-build-fuzz}
seconds=${2:-60}
cd "$(dirname "$0")/.."
if ! command -v clang >/dev/null; then
  echo "run-fuzz: clang not found, fuzzing skipped"
  exit 0
fi
CC=clang CXX=clang++ cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPS_FUZZ=ON -DBUILD_TESTING=OFF >/dev/null
cmake --build "$build" -j "$(nproc)"
targets=(fuzz_sync_request fuzz_auth fuzz_ws_frames fuzz_v2_request fuzz_gzip fuzz_client_sse
  fuzz_chat_stream fuzz_content_hash fuzz_client_import fuzz_client_v2_answer
  fuzz_client_legacy_answer)
# UBSan findings (e.g. signed overflow) are crashes too, not just log lines.
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
per=$(( seconds / ${#targets[@]} ))
# One libFuzzer process is one thread: the targets run in $lanes lanes at
# once (one per core), each target still for $per seconds.
lanes=$(nproc)
fuzz_one() { # TARGET: its run, its last lines on stdout; fails if it found a crash
  local t=$1 work="$build/corpus-$1" dict=fuzz/json.dict
  mkdir -p "$work"
  [ -f "fuzz/$t.dict" ] && dict="fuzz/$t.dict"
  echo "run-fuzz: $t for ${per}s"
  "$build/bin/$t" -seed="${FUZZ_SEED:-1}" -max_total_time="$per" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
    -dict="$dict" -artifact_prefix="$build/" "$work" "fuzz/corpus/$t" 2>&1 | tail -n 3
}
export -f fuzz_one
export build per
printf '%s\n' "${targets[@]}" | xargs -P "$lanes" -I{} bash -c 'set -o pipefail; fuzz_one "$1" > "$build/fuzz-$1.log"' _ {} ||
  status=$?
for t in "${targets[@]}"; do cat "$build/fuzz-$t.log"; done
exit "${status:-0}"
