#!/usr/bin/env bash
# The TypeScript SDK's checks and tests, against the real gateway binary:
#   npm ci, tsc --strict over sources and tests, the build, the tests (node:test; each test file
#   starts its own gateways), including the npm pack + install test. Exits non-zero on any failure.
#
#   ./run-tests.sh [GATEWAY_BINARY]     (default: ../../target/debug/auditline-local)
set -euo pipefail
cd "$(dirname "$0")"
started=$SECONDS

gateway="${1:-$(cd ../.. && pwd)/target/debug/auditline-local}"
if [[ ! -x "$gateway" ]]; then
  echo "run-tests.sh: the gateway binary $gateway does not exist: cargo build -p auditline-local" >&2
  exit 1
fi
# A copy: a cargo build running meanwhile may replace the binary under the tests.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp "$gateway" "$work/auditline-local"
export AUDITLINE_GATEWAY="$work/auditline-local"

step() { printf '\n== %s (%ss)\n' "$1" "$((SECONDS - started))"; }

step "npm ci"
npm ci --no-audit --no-fund

step "tsc --strict --noEmit (sources and tests)"
npx tsc -p tsconfig.test.json --strict --noEmit

step "build (dist/, .d.ts)"
rm -rf dist .test-build
npx tsc -p tsconfig.json --strict
npx tsc -p tsconfig.test.json --strict

step "tests against $gateway"
node --test --test-concurrency="${AUDITLINE_TEST_CONCURRENCY:-4}" --test-reporter=spec .test-build/test/*.test.js

step "done in $((SECONDS - started)) s"
