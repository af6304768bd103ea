#!/usr/bin/env python3
"""Schemathesis against the local gateway: every operation of docs/openapi.json, with schema-valid
and schema-violating requests, every check on. The document and the gateway must agree: a
schema-valid request accepted, a violating one refused with a 4xx, each answer of a declared status
and schema, 405 for an undeclared method on a known path. Exits non-zero on any mismatch.

Usage: contract_check.py GATEWAY_BINARY ST_BINARY [MAX_EXAMPLES]
"""

import os
import re
import subprocess
import sys
from pathlib import Path


def start_gateway(binary: str) -> tuple[subprocess.Popen[str], str, str]:
    gateway = subprocess.Popen(
        [binary, "--memory", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    url = token = None
    assert gateway.stdout is not None
    for line in gateway.stdout:
        if found := re.search(r"HTTP API\s+(http://\S+)/audit/logs", line):
            url = found.group(1)
        if found := re.match(r"\s+token\s+(\S+\.\S+\.\S+)\s*$", line):
            token = found.group(1)
        if url and token:
            break
    if not (url and token):
        gateway.kill()
        sys.exit("contract check: the gateway did not print its URL and development token")
    return gateway, url, token


def main() -> None:
    binary, st = sys.argv[1], sys.argv[2]
    max_examples = sys.argv[3] if len(sys.argv) > 3 else "50"
    gateway, url, token = start_gateway(binary)
    try:
        command = [
            st, "run", "docs/openapi.json",
            "--url", url,
            "--header", f"Authorization: Bearer {token}",
            "--checks", "all",
            "--max-examples", max_examples,
            "--seed", "20261206",
            "--workers", "1",
            "--generation-database", "none",
            "--no-color",
        ]
        # What the document cannot say (opaque tokens, start ≤ end, one key per request).
        here = str(Path(__file__).resolve().parent)
        env = {**os.environ, "SCHEMATHESIS_HOOKS": "contract_hooks", "PYTHONPATH": here}
        status = subprocess.call(command, env=env)
    finally:
        gateway.terminate()
        gateway.wait(timeout=10)
    sys.exit(status)


if __name__ == "__main__":
    main()
