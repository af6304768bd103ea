"""Every Python block of the README runs as written, against the real gateway."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gateway import Gateway

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_readme_has_a_ten_line_quick_start() -> None:
    quick_start = BLOCKS[0]
    assert "AuditClient(" in quick_start and "log_create" in quick_start
    assert len([line for line in quick_start.splitlines() if line.strip()]) <= 10


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block-{i}" for i in range(len(BLOCKS))])
def test_a_readme_block_runs_as_written(block: str, gateway: Gateway, tmp_path: Path) -> None:
    env = dict(os.environ, AUDITLINE_URL=gateway.url, AUDITLINE_API_KEY=gateway.api_key)
    run = subprocess.run(
        [sys.executable, "-c", block], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, f"stdout:\n{run.stdout}\nstderr:\n{run.stderr}"
    if "add_listener" in block:
        assert "live: VIEW REPORT report-7" in run.stdout
    if "spool_dir" in block:
        assert "left by the previous run: 0" in run.stdout
