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

start_moto
echo "==> cargo test --workspace"
cargo test --workspace "$@"
