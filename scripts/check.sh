#!/usr/bin/env bash
# `make check`: every test, quietly, then one summary table.
#
# Steps: the release build and its ctest suites, the ASan+UBSan build and
# the same suites, the libFuzzer run, the OpenAPI linter. Build and tool
# output goes to logs under $LOGS (shown only when a step fails); ctest
# writes a JUnit file per build, from which scripts/check_summary.py prints
# one row per suite (cases passed, failed, time) and the other steps one row
# each. Every step runs even after a failure; the exit status is non-zero if
# any failed.
# usage: scripts/check.sh   (BUILD, ASAN_BUILD, FUZZ_BUILD, JOBS, CTEST_JOBS,
#                            ASAN_CTEST_JOBS, FUZZ_SECONDS
#                            from the environment, as the Makefile passes them)
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
ASAN_BUILD=${ASAN_BUILD:-build-asan}
FUZZ_BUILD=${FUZZ_BUILD:-build-fuzz}
JOBS=${JOBS:-$(nproc)}
# The release suites mostly wait (on servers, sockets, child processes): at
# -j$(nproc) make check kept the cores 57 % busy (25 min wall, 29 min of CPU
# on 2 cores), and two suites per core took the release ctest from 629 to
# 449 s. Under ASan the suites are CPU-bound: two per core made that ctest
# slower (648 -> 729 s; the client suites 4x each), so one per core there.
CTEST_JOBS=${CTEST_JOBS:-$((JOBS * 2))}
ASAN_CTEST_JOBS=${ASAN_CTEST_JOBS:-$JOBS}
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
LOGS=${LOGS:-$BUILD/check-logs}
mkdir -p "$LOGS"
rm -f "$LOGS"/*.log "$LOGS"/*.xml "$LOGS"/steps.tsv
export MAKEFLAGS=--no-print-directory   # no "Entering directory" lines

failed=0
# step NAME LOG command...: runs quietly, records "name<TAB>ok|FAILED<TAB>seconds"
step() {
  local name=$1 log=$2
  shift 2
  local t0=$SECONDS
  printf 'check: %-22s' "$name"
  if "$@" >"$log" 2>&1; then
    printf 'ok     %4d s\n' $((SECONDS - t0))
    printf '%s\tok\t%d\n' "$name" $((SECONDS - t0)) >>"$LOGS/steps.tsv"
    return 0
  fi
  printf 'FAILED %4d s  (log: %s)\n' $((SECONDS - t0)) "$log"
  tail -n 40 "$log" | sed 's/^/    | /'
  printf '%s\tFAILED\t%d\n' "$name" $((SECONDS - t0)) >>"$LOGS/steps.tsv"
  failed=1
  return 1
}

configure_build() { # DIR cmake-args...
  local dir=$1
  shift
  cmake -S . -B "$dir" "$@" && cmake --build "$dir" -j "$JOBS"
}

run_ctest() { # DIR JUNIT JOBS (the JUnit path made absolute before the cd)
  local junit
  junit=$(realpath -m "$2")
  (cd "$1" && ctest -j "$3" --output-on-failure --output-junit "$junit")
}

step deps "$LOGS/deps.log" scripts/install-deps.sh postgres || true
if step "build release" "$LOGS/build.log" configure_build "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo; then
  step "ctest release" "$LOGS/ctest.log" run_ctest "$BUILD" "$LOGS/release.xml" "$CTEST_JOBS" || true
fi
if step "build asan" "$LOGS/build-asan.log" configure_build "$ASAN_BUILD" -DCMAKE_BUILD_TYPE=Debug -DPS_SANITIZE=ON; then
  step "ctest asan" "$LOGS/ctest-asan.log" run_ctest "$ASAN_BUILD" "$LOGS/asan.xml" "$ASAN_CTEST_JOBS" || true
fi
step fuzz "$LOGS/fuzz.log" scripts/run-fuzz.sh "$FUZZ_BUILD" "$FUZZ_SECONDS" || true
step "lint openapi" "$LOGS/lint-openapi.log" scripts/lint-openapi.sh || true

python3 scripts/check_summary.py "$LOGS" || failed=1
exit $failed
