#!/usr/bin/env bash
# Runs integration suites with their answers recorded (PS_OPENAPI_LOG, see
# tests/integration/harness.py) and validates every answer against
# docs/openapi.yaml with tools/openapi/check-answers.mjs (Ajv, pinned in
# tools/openapi/package-lock.json). ctest runs it as integration.openapi_answers.
# usage: scripts/check-openapi-answers.sh  (POLYSYNCD from the environment)
set -euo pipefail
cd "$(dirname "$0")/.."
tools=tools/openapi
if ! command -v node >/dev/null; then
  scripts/install-deps.sh nodejs
fi
if [[ ! -d "$tools/node_modules/ajv" || ! -d "$tools/node_modules/yaml" ]]; then
  (cd "$tools" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
log=$(mktemp /tmp/polysync-openapi-XXXXXX.jsonl)
trap 'rm -f "$log"' EXIT
(cd tests/integration &&
  PS_OPENAPI_LOG="$log" python3 -m unittest test_endpoints test_cases test_bad_input test_cursor_expiry 2>&1 |
  tail -n 3)
node "$tools/check-answers.mjs" docs/openapi.yaml "$log"
