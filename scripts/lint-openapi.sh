#!/usr/bin/env bash
# Lints docs/openapi.yaml with the pinned Redocly CLI (tools/openapi). The
# linter is installed from the npm registry into tools/openapi/node_modules
# on first use; later runs reuse it.
set -euo pipefail
cd "$(dirname "$0")/.."
tools=tools/openapi
if ! command -v npm >/dev/null; then
  scripts/install-deps.sh nodejs
fi
if [[ ! -x "$tools/node_modules/.bin/redocly" ]]; then
  echo "lint-openapi: installing the pinned linter"
  (cd "$tools" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
"$tools/node_modules/.bin/redocly" lint --config "$tools/redocly.yaml" --format=stylish \
  docs/openapi.yaml
