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

echo "==> cargo build: the Lambda functions and the local gateway (tests run the real binaries)"
cargo build --quiet -p auditline-functions -p auditline-local

start_moto
echo "==> cargo test --workspace"
cargo test --workspace "$@"
