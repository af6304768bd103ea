#!/usr/bin/env bash
# Runs the benchmarks against a local DynamoDB API (started here, as for the tests) and writes the
# figures into BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/services.sh
start_moto
# Sections can be named to run only those, e.g. ./scripts/bench.sh auth
cargo bench -p auditline-tests --bench benchmarks -- "$@"
