from __future__ import annotations

import uuid
from pathlib import Path
from typing import Callable, Iterator

import pytest

from gateway import Gateway, gateway_binary

GatewayFactory = Callable[..., Gateway]


def pytest_sessionstart(session: pytest.Session) -> None:
    binary = gateway_binary()
    if not binary.is_file():
        # Loudly, once, before any test: every test that needs it errors too (never skipped).
        print(f"\nauditline SDK tests: the gateway binary {binary} is missing (cargo build -p auditline-local)\n")


@pytest.fixture(scope="session")
def gateway() -> Iterator[Gateway]:
    """One in-memory gateway shared by the tests that only add entries of their own."""
    try:
        gw = Gateway().start()
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)
    yield gw
    gw.stop()


@pytest.fixture
def make_gateway(tmp_path: Path) -> Iterator[GatewayFactory]:
    """Gateways of a test's own (stopped at its end): ``make_gateway(data_dir=..., env=...)``."""
    started: list[Gateway] = []

    def make(**options: object) -> Gateway:
        try:
            gw = Gateway(**options)  # type: ignore[arg-type]
            started.append(gw)
            return gw.start()
        except RuntimeError as e:
            pytest.fail(str(e), pytrace=False)

    yield make
    for gw in started:
        gw.stop()


@pytest.fixture
def marker() -> str:
    """A value no other test uses, to find this test's entries."""
    return uuid.uuid4().hex[:12]
