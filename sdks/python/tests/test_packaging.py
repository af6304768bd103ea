"""``python -m build`` makes a wheel and an sdist; the wheel installs into a clean virtualenv and
works there against the gateway."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from pathlib import Path

from gateway import Gateway

PROJECT = Path(__file__).resolve().parents[1]


def test_the_wheel_installs_into_a_clean_virtualenv_and_works(gateway: Gateway, tmp_path: Path) -> None:
    source = tmp_path / "src"
    shutil.copytree(
        PROJECT,
        source,
        ignore=shutil.ignore_patterns(".mypy_cache", ".pytest_cache", "__pycache__", "*.egg-info", "build", "dist"),
    )
    dist = tmp_path / "dist"
    build = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    [wheel] = dist.glob("auditline-*.whl")
    [sdist] = dist.glob("auditline-*.tar.gz")
    names = zipfile.ZipFile(wheel).namelist()
    for expected in ("auditline/py.typed", "auditline/__init__.py", "auditline/fastapi.py", "auditline/aio.py"):
        assert expected in names
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert "Requires-Dist: httpx" in metadata and "Requires-Dist: websockets" in metadata
    assert 'Requires-Dist: fastapi>=0.100; extra == "fastapi"' in metadata
    assert sum(line.startswith("Requires-Dist:") for line in metadata.splitlines()) == 3
    with tarfile.open(sdist) as archive:
        members = archive.getnames()
    assert any(m.endswith("/README.md") for m in members) and any(m.endswith("/py.typed") for m in members)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    install = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    wheelhouse = os.environ.get("AUDITLINE_WHEELHOUSE")
    if wheelhouse:
        install += ["--no-index", "--find-links", wheelhouse]
    installed = subprocess.run([*install, str(wheel)], capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stdout + installed.stderr

    script = textwrap.dedent(
        """
        import asyncio, os, sys
        import auditline
        from auditline import AsyncAuditClient, AuditClient
        assert auditline.__file__.startswith(sys.prefix), auditline.__file__
        assert os.path.exists(os.path.join(os.path.dirname(auditline.__file__), "py.typed"))
        try:
            import auditline.fastapi
        except ImportError:
            pass
        else:
            raise SystemExit("fastapi is an extra: it should not be installed")
        url, key = sys.argv[1:3]
        with AuditClient(url, api_key=key, flush_at_exit=False) as audit:
            receipt = audit.log_create("FILE", "from-a-clean-venv", metadata={"python": sys.version}).result(10)
            assert audit.get_log(receipt.id).entity_id == "from-a-clean-venv"

        async def main():
            async with AsyncAuditClient(url, api_key=key) as audit:
                receipt = await audit.log_view("FILE", "from-a-clean-venv")
                return [e.id async for e in audit.get_logs_by_entity("from-a-clean-venv")]

        ids = asyncio.run(main())
        print("ok", auditline.__version__, len(ids))
        """
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    run = subprocess.run(
        [str(python), "-c", script, gateway.url, gateway.api_key],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=env,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.split()[:2] == ["ok", "0.1.0"] and int(run.stdout.split()[2]) >= 2
