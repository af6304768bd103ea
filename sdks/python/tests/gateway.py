"""The real local gateway (``auditline-local``) as a test subprocess."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[3]
DEFAULT_BINARY = REPO / "target" / "debug" / "auditline-local"


def gateway_binary() -> Path:
    """``AUDITLINE_GATEWAY`` (set by run-tests.sh), else the debug build in the repository."""
    configured = os.environ.get("AUDITLINE_GATEWAY")
    path = Path(configured) if configured else DEFAULT_BINARY
    if not path.is_absolute():
        path = REPO / path
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Gateway:
    """One ``auditline-local``: in memory, or on a data directory (then it keeps its trail and its
    API key across :meth:`restart`)."""

    def __init__(
        self,
        *,
        data_dir: Path | None = None,
        port: int | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        binary = gateway_binary()
        if not binary.is_file() or not os.access(binary, os.X_OK):
            raise RuntimeError(
                f"the gateway binary {binary} is missing: build it with `cargo build -p auditline-local` "
                "or pass its path to run-tests.sh (AUDITLINE_GATEWAY)"
            )
        self.binary = binary
        self.data_dir = data_dir
        self.port = port if port is not None else free_port()
        self.env = dict(env or {})
        self.process: subprocess.Popen[bytes] | None = None
        self.log_dir = Path(tempfile.mkdtemp(prefix="auditline-gw-"))
        self.runs = 0
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_key = ""
        self.token: str | None = None

    def start(self) -> Gateway:
        self.runs += 1
        log_path = self.log_dir / f"run-{self.runs}.log"
        args = [str(self.binary), "--host", "127.0.0.1", "--port", str(self.port)]
        args += ["--memory"] if self.data_dir is None else ["--data-dir", str(self.data_dir)]
        env = dict(os.environ)
        env.pop("AUDITLINE_MEMORY", None)
        env.pop("AUDITLINE_DATA_DIR", None)
        env.setdefault("RUST_LOG", "warn")
        env.update(self.env)
        with open(log_path, "wb") as out:
            self.process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 30
        text = ""
        while time.monotonic() < deadline:
            text = log_path.read_text(errors="replace")
            if "Ctrl-C" in text:
                break
            if self.process.poll() is not None:
                raise RuntimeError(f"the gateway exited at start ({self.process.returncode}):\n{text}")
            time.sleep(0.02)
        else:
            self.stop()
            raise RuntimeError(f"the gateway did not start within 30 s:\n{text}")
        api = re.search(r"HTTP API\s+(http://\S+)/audit/logs", text)
        key = re.search(r"api key\s+(alk_\S+)", text)
        token = re.search(r"token\s+(eyJ\S+)", text)
        if api is None or key is None:
            raise RuntimeError(f"cannot read the gateway's banner:\n{text}")
        self.url = api.group(1)
        self.api_key = key.group(1)
        self.token = token.group(1) if token else None
        self.wait_healthy()
        return self

    def wait_healthy(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(self.url + "/audit/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the gateway did not become healthy")
            time.sleep(0.05)

    def stop(self, *, kill: bool = False) -> None:
        process = self.process
        if process is None:
            return
        self.process = None
        if process.poll() is None:
            process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def restart(self, *, kill: bool = False) -> Gateway:
        self.stop(kill=kill)
        return self.start()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.api_key}

    def all_entries(self, **params: str) -> list[dict[str, object]]:
        """Every entry matching ``params``, read straight from the gateway (no SDK)."""
        entries: list[dict[str, object]] = []
        query = dict(params)
        query["limit"] = "1000"
        with httpx.Client(base_url=self.url, headers=self.headers(), timeout=30) as http:
            while True:
                response = http.get("/audit/logs", params=query)
                response.raise_for_status()
                page = response.json()
                entries.extend(page["entries"])
                if not page["next_token"]:
                    return entries
                query["next_token"] = page["next_token"]
