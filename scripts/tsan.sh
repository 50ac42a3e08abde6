#!/usr/bin/env bash
# ThreadSanitizer run of the suites that exercise polysyncd's and the
# client's threads (docs/testing.md, "ThreadSanitizer"). Not part of
# `make check`: a TSan build is slow and CMake has no option for it, so it
# is configured here out of tree (-Werror stays). Every process writes its
# reports to DIR/tsan/log.PID; the script fails when any report exists,
# and prints them.
# usage: scripts/tsan.sh [DIR] [JOBS]
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build-tsan}
jobs=${2:-$(nproc)}
flags="-fsanitize=thread -g -O1"
mkdir -p "$dir"
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_FLAGS="$flags" \
  -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS=-fsanitize=thread \
  -DCMAKE_SHARED_LINKER_FLAGS=-fsanitize=thread >"$dir/configure.log" 2>&1 ||
  { cat "$dir/configure.log"; exit 1; }
cmake --build "$dir" -j "$jobs" --target polysyncd polysyncd_faults polysync \
  test_store_readers test_store_journal test_store_docs test_lane test_legacy_prepare test_store_packahead \
  >"$dir/build.log" 2>&1 ||
  { tail -n 40 "$dir/build.log"; exit 1; }
logs="$PWD/$dir/tsan"
rm -rf "$logs"
mkdir -p "$logs"
# exitcode=0: a report is judged from the logs, so a suite that checks a
# child's exit status (a CLI stopped by a signal) is not failed by TSan's 66
export TSAN_OPTIONS="halt_on_error=0 second_deadlock_stack=1 exitcode=0 log_path=$logs/log"
suites='^(unit\.(test_store_readers|test_store_journal|test_store_docs|test_lane|test_legacy_prepare|test_store_packahead)'
suites+='|integration\.(test_legacy_stream|test_lane|test_big_body|test_v2|test_events'
suites+='|test_websocket|test_skip_bad_input|test_housekeeping|test_lane_fairness'
suites+='|streamed\.test_endpoints)'
suites+='|client\.(test_client_pull_ahead|test_client_push_ahead|test_client_e2e|test_client_first_upload))$'
rc=0
(cd "$dir" && ctest -j "$jobs" -R "$suites" --output-on-failure >ctest.log 2>&1) || rc=$?
tail -n 12 "$dir/ctest.log"
if compgen -G "$logs/log.*" >/dev/null; then
  cat "$logs"/log.*
  echo "tsan: $(cat "$logs"/log.* | grep -c '^WARNING: ThreadSanitizer') report(s) in $logs"
  exit 1
fi
echo "tsan: no report"
exit $rc
