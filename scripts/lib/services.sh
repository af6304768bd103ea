# Shared by scripts/test.sh and scripts/bench.sh: installs and starts the local services the tests
# need, on loopback, and stops them when the calling script exits. Source it; do not run it.

TOOLS_DIR="${TOOLS_DIR:-$PWD/.tools}"
MOTO_VERSION="5.2.5"
SAM_CLI_VERSION="1.170.0"
CFN_LINT_VERSION="1.58.0"
CARGO_LAMBDA_VERSION="1.9.2"
SCHEMATHESIS_VERSION="4.32.5"
STANDARDWEBHOOKS_VERSION="1.3.0"

# Installs Schemathesis into a virtualenv of its own (its dependencies are not moto's).
ensure_schemathesis() {
  local venv="$TOOLS_DIR/schemathesis"
  if [ ! -x "$venv/bin/st" ] || ! "$venv/bin/st" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
    echo "==> installing schemathesis==$SCHEMATHESIS_VERSION into $venv (once)"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "schemathesis==$SCHEMATHESIS_VERSION"
  fi
}

# Installs moto's server mode (a local DynamoDB API with Streams) into an ignored virtualenv.
ensure_moto() {
  local venv="$TOOLS_DIR/venv"
  if [ ! -x "$venv/bin/moto_server" ]; then
    echo "==> installing moto[server]==$MOTO_VERSION into $venv (once)"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "moto[server]==$MOTO_VERSION"
  fi
  # The independent verifier of webhook signatures (the Standard Webhooks reference library).
  if ! "$venv/bin/python" -c "import standardwebhooks" 2>/dev/null; then
    "$venv/bin/pip" install --quiet "standardwebhooks==$STANDARDWEBHOOKS_VERSION"
  fi
}

# Installs the template checkers (cfn-lint, and the SAM CLI for `sam validate --lint`).
ensure_template_tools() {
  ensure_moto
  if [ ! -x "$TOOLS_DIR/venv/bin/sam" ] || [ ! -x "$TOOLS_DIR/venv/bin/cfn-lint" ]; then
    echo "==> installing aws-sam-cli and cfn-lint into $TOOLS_DIR/venv (once)"
    "$TOOLS_DIR/venv/bin/pip" install --quiet "aws-sam-cli==$SAM_CLI_VERSION" "cfn-lint==$CFN_LINT_VERSION"
  fi
}

# Installs what `sam build` needs for Rust: cargo-lambda and zig (from PyPI), and the arm64 target.
ensure_cargo_lambda() {
  ensure_template_tools
  if [ ! -x "$TOOLS_DIR/venv/bin/cargo-lambda" ]; then
    echo "==> installing cargo-lambda and ziglang into $TOOLS_DIR/venv (once)"
    "$TOOLS_DIR/venv/bin/pip" install --quiet "cargo-lambda==$CARGO_LAMBDA_VERSION" ziglang
  fi
  rustup target add aarch64-unknown-linux-gnu >/dev/null
}

# The openssl command line makes the test CA of the TLS tests and the cold-path bench (once).
ensure_openssl() {
  if ! command -v openssl >/dev/null; then
    echo "==> installing Debian's openssl (once)"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq openssl >/dev/null
  fi
}

# Installs Debian's Chromium (once; as root, or with sudo) and the browser tests' one npm package.
ensure_browser() {
  if [ ! -x /usr/bin/chromium ]; then
    echo "==> installing Debian's chromium (once)"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
  fi
  if [ ! -d tests/browser/node_modules/playwright-core ]; then
    echo "==> installing playwright-core into tests/browser (once; it drives the system Chromium)"
    (cd tests/browser && npm ci --no-audit --no-fund --silent)
  fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts moto on a free loopback port, waits until it answers, and exports its URL as
# AUDITLINE_TEST_DYNAMODB_ENDPOINT. Fails loudly if it does not come up.
start_moto() {
  ensure_moto
  local port log
  port="$(free_port)"
  log="$TOOLS_DIR/moto.log"
  # moto's own server, with the transaction bookkeeping repair described in moto_server.py.
  "$TOOLS_DIR/venv/bin/python" scripts/lib/moto_server.py -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
  MOTO_PID=$!
  trap stop_services EXIT
  export AUDITLINE_TEST_DYNAMODB_ENDPOINT="http://127.0.0.1:$port"
  # Python with the cryptography package (a dependency of moto): the independent check of the
  # witnesses' cosignatures.
  export AUDITLINE_TEST_PYTHON="$TOOLS_DIR/venv/bin/python"
  for _ in $(seq 1 100); do
    if python3 -c "import urllib.request, sys; urllib.request.urlopen('$AUDITLINE_TEST_DYNAMODB_ENDPOINT/moto-api/', timeout=1)" 2>/dev/null; then
      echo "==> local DynamoDB API (moto) at $AUDITLINE_TEST_DYNAMODB_ENDPOINT"
      return 0
    fi
    if ! kill -0 "$MOTO_PID" 2>/dev/null; then break; fi
    sleep 0.2
  done
  echo "moto did not start; its log follows" >&2
  cat "$log" >&2
  exit 1
}

stop_services() {
  if [ -n "${MOTO_PID:-}" ]; then
    kill "$MOTO_PID" 2>/dev/null || true
    wait "$MOTO_PID" 2>/dev/null || true
  fi
}
