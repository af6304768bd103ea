#!/usr/bin/env bash
# The Python SDK's checks, against the real gateway binary:
#   sdks/python/run-tests.sh [GATEWAY_BINARY]     (default target/debug/auditline-local; relative to the repo)
# Creates (or reuses) the virtualenv .tools/sdk-python with requirements-dev.txt and the package
# installed editable, then runs mypy --strict and pytest (which also builds the wheel and sdist and
# installs the wheel into a clean virtualenv). Exits non-zero on any failure.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
BINARY="${1:-target/debug/auditline-local}"
case "$BINARY" in
  /*) ;;
  *) BINARY="$REPO/$BINARY" ;;
esac
if [ ! -x "$BINARY" ]; then
  echo "run-tests.sh: the gateway binary $BINARY is missing (cargo build -p auditline-local)" >&2
  exit 1
fi

PYTHON="${PYTHON:-python3}"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' || {
  echo "run-tests.sh: $PYTHON is older than Python 3.10" >&2
  exit 1
}

VENV="$REPO/.tools/sdk-python"
WHEELHOUSE="$VENV/wheelhouse"
STAMP="$VENV/.installed"
WANT="$(cat "$HERE/requirements-dev.txt" "$HERE/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$STAMP" 2>/dev/null || true)" != "$WANT" ]; then
  echo "== installing the test tools into $VENV"
  "$PYTHON" -m venv "$VENV"
  PIP=("$VENV/bin/python" -m pip --quiet --disable-pip-version-check)
  "${PIP[@]}" install -r "$HERE/requirements-dev.txt"
  "${PIP[@]}" install --no-deps --no-build-isolation -e "$HERE"
  # The wheel's own dependencies, for the clean-virtualenv test to install without an index.
  rm -rf "$WHEELHOUSE"
  "${PIP[@]}" download --dest "$WHEELHOUSE" $(grep -E '^(httpx|websockets)==' "$HERE/requirements-dev.txt")
  echo "$WANT" > "$STAMP"
fi

cd "$HERE"
echo "== mypy --strict (package, tests, bench)"
"$VENV/bin/python" -m mypy --strict

echo "== pytest against $BINARY"
export AUDITLINE_GATEWAY="$BINARY"
export AUDITLINE_WHEELHOUSE="$WHEELHOUSE"
export AUDITLINE_SDK_DOWNTIME="${AUDITLINE_SDK_DOWNTIME:-30}"
"$VENV/bin/python" -m pytest -q -p no:cacheprovider tests
