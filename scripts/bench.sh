#!/usr/bin/env bash
# Runs the benchmarks against a local DynamoDB API (started here, as for the tests) and writes the
# figures into BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/services.sh
# The Lambda section measures the release binaries.
cargo build --release --quiet -p auditline-functions -p auditline-local
export AUDITLINE_BIN_DIR="$PWD/target/release"
start_moto
# `sam build` (arm64, tens of minutes) runs only when asked for: ./scripts/bench.sh sam
if [[ " $* " == *" sam "* ]]; then ensure_cargo_lambda; fi
# Sections can be named to run only those, e.g. ./scripts/bench.sh auth
cargo bench -p auditline-tests --bench benchmarks -- "$@"
