#!/usr/bin/env bash
# Runs the benchmarks against a local DynamoDB API (started here, as for the tests) and writes the
# figures into BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/services.sh
# The Lambda, cold-path and soak sections measure the release binaries (cold-floor: the cold
# path's floor, a lambda_runtime hello with the same profile).
cargo build --release --quiet -p auditline-functions -p auditline-local
cargo build --release --quiet -p auditline-tests --bin cold-floor
export AUDITLINE_BIN_DIR="$PWD/target/release"
start_moto
ensure_openssl
# `sam build` (arm64, tens of minutes) runs only when asked for: ./scripts/bench.sh sam
if [[ " $* " == *" sam "* ]]; then ensure_cargo_lambda; fi
# The viewer, in the browser (Node and Debian's Chromium): ./scripts/bench.sh viewer
if [[ $# -eq 0 || " $* " == *" viewer "* ]]; then
  ensure_browser
  echo "==> viewer: first rows with 10,000 entries, live tail latency over 100 entries, page weight"
  (cd tests/browser && node bench.mjs)
fi
sections=()
for s in "$@"; do [[ "$s" == viewer ]] || sections+=("$s"); done
if [[ $# -gt 0 && ${#sections[@]} -eq 0 ]]; then exit 0; fi
# Sections can be named to run only those, e.g. ./scripts/bench.sh auth
cargo bench -p auditline-tests --bench benchmarks -- "${sections[@]}"
