#!/usr/bin/env bash
# `make coverage`: line and function coverage of src/ by the ctest suites.
# A Debug build with gcov instrumentation (PS_COVERAGE), every suite run
# once, lcov collects src/ only (tests, bench and system headers left out),
# genhtml writes DIR/html/index.html; the per-file table is printed.
# usage: scripts/coverage.sh [DIR] [JOBS]
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build-coverage}
jobs=${2:-$(nproc)}
export MAKEFLAGS=--no-print-directory
mkdir -p "$dir"
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Debug -DPS_COVERAGE=ON >"$dir/configure.log" 2>&1 ||
  { cat "$dir/configure.log"; exit 1; }
cmake --build "$dir" -j "$jobs" >"$dir/build.log" 2>&1 || { tail -n 40 "$dir/build.log"; exit 1; }
lcov --quiet --zerocounters --directory "$dir"
# A failing suite still leaves its counts; report them, then fail.
rc=0
# client.install and integration.test_package build an outside program
# against the installed static library, which here holds gcov-instrumented
# objects it cannot link (and the install rebuilds objects mid-run).
(cd "$dir" && ctest -j "$jobs" -E "^(client.install|integration.test_package)$" --output-on-failure >ctest.log 2>&1) || rc=$?
lcov --quiet --capture --directory "$dir" --output-file "$dir/all.info" 2>"$dir/lcov.log" ||
  { grep -i error "$dir/lcov.log" | tail -n 5; exit 1; }
lcov --quiet --extract "$dir/all.info" "$PWD/src/*" --output-file "$dir/src.info"
genhtml --quiet "$dir/src.info" --output-directory "$dir/html"
lcov --list "$dir/src.info"
lcov --summary "$dir/src.info"
[ $rc -eq 0 ] || echo "coverage: some suites failed (see $dir/ctest.log)"
exit $rc
