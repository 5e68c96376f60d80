#!/usr/bin/env bash
# Lints the API description with a real OpenAPI linter (Redocly CLI, its
# recommended rules: errors and warnings both fail), generates the
# TypeScript types a frontend uses (openapi-typescript) and compiles a
# typed client over them (tsc). Versions are pinned in package-lock.json;
# npm ci installs them from the npm registry into infra/openapi/node_modules.
set -euo pipefail
cd "$(dirname "$0")"
SPEC=../../adapters/httpapi/openapi.yaml
command -v npm >/dev/null || { echo "openapi check: npm is not installed (Node.js 20 + npm)" >&2; exit 1; }
[ -d node_modules/@redocly ] || npm ci --silent --no-audit --no-fund
# Warnings fail too: the output must be the linter's all-clear.
export NO_UPDATE_NOTIFIER=1 REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true
if ! out=$(./node_modules/.bin/redocly lint "$SPEC" 2>&1) || ! grep -q "Woohoo! Your API description is valid" <<<"$out" || grep -qE "You have [0-9]+ warning" <<<"$out"; then
  grep -v -e '║' -e '╔' -e '╚' <<<"$out" >&2
  echo "openapi check: redocly lint found problems in $SPEC" >&2
  exit 1
fi
mkdir -p generated
./node_modules/.bin/openapi-typescript "$SPEC" -o generated/api.d.ts >/dev/null
./node_modules/.bin/tsc -p tsconfig.json
echo "openapi check: lint clean, TypeScript client compiles"
