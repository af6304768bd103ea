#!/usr/bin/env bash
# Runs every check and every test: formatting, clippy, then all workspace tests against a local
# DynamoDB-API server that this script installs (once) and starts on loopback. No AWS, no Docker.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/services.sh

echo "==> cargo fmt --all --check"
cargo fmt --all --check
echo "==> cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings

ensure_template_tools
echo "==> cfn-lint template.yaml; sam validate --lint"
"$TOOLS_DIR/venv/bin/cfn-lint" template.yaml
SAM_CLI_TELEMETRY=0 "$TOOLS_DIR/venv/bin/sam" validate --lint --region us-east-1 >/dev/null

# One build of every binary and test target, with one set of features: the tests run the real
# binaries, and building those apart would compile much of the dependency graph twice.
echo "==> cargo build: every binary and test (the tests run the real binaries)"
cargo build --quiet --workspace --bins --tests

start_moto
echo "==> template.yaml created in moto's CloudFormation (SAM translated offline)"
"$TOOLS_DIR/venv/bin/python" scripts/lib/cfn_emulate.py template.yaml 2>&1 | grep -v '^No Moto CloudFormation support'

ensure_openssl
echo "==> cargo test --workspace"
cargo test --workspace "$@"

# The viewer in a real browser, against the gateway binary built above.
ensure_browser
echo "==> browser tests (tests/browser: the viewer in headless Chromium)"
(cd tests/browser && node --test --test-concurrency=1)

# The contract the SDKs stand on: docs/openapi.json and the gateway agree (Schemathesis, about 2,400
# cases: schema-valid requests accepted, violating ones refused, every answer as declared).
ensure_schemathesis
echo "==> Schemathesis: docs/openapi.json against the gateway binary"
"$TOOLS_DIR/schemathesis/bin/python" scripts/lib/contract_check.py target/debug/auditline-local "$TOOLS_DIR/schemathesis/bin/st" 60

# The client SDKs, each against the gateway binary built above (their own virtualenv / node_modules).
echo "==> Python SDK (sdks/python: mypy --strict, pytest with fault drills, the wheel in a clean venv)"
sdks/python/run-tests.sh target/debug/auditline-local
echo "==> TypeScript SDK (sdks/typescript: tsc --strict, node:test with fault drills, npm pack installed)"
sdks/typescript/run-tests.sh "$PWD/target/debug/auditline-local"
