"""The live feed: every entry once and in id order across a dropped socket, a gateway restart and
a feed that fails its posts; erasure notices."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import Future
from pathlib import Path

import httpx
import pytest

from auditline import AsyncAuditClient, AuditClient, AuditLogEntry, ErasureNotice, Receipt, Subscription
from conftest import GatewayFactory
from gateway import Gateway, free_port
from proxies import TcpProxy


class Collector:
    def __init__(self) -> None:
        self.entries: list[AuditLogEntry] = []
        self.lock = threading.Lock()

    def __call__(self, entry: AuditLogEntry) -> None:
        with self.lock:
            self.entries.append(entry)

    def wait_for(self, count: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.entries) < count and time.monotonic() < deadline:
            time.sleep(0.05)

    def ids(self) -> list[str]:
        with self.lock:
            return [e.id for e in self.entries]


def assert_once_in_order(seen: list[str], expected: set[str]) -> None:
    assert len(seen) == len(set(seen)), f"{len(seen) - len(set(seen))} entries delivered twice"
    missing = expected - set(seen)
    assert not missing, f"{len(missing)} entries never delivered"
    assert not set(seen) - expected, "entries delivered that were not logged"
    assert seen == sorted(seen), "entries delivered out of id order"


def write_in_background(client: AuditClient, prefix: str, futures: list[Future[Receipt]], stop: threading.Event) -> threading.Thread:
    def run() -> None:
        i = 0
        while not stop.is_set():
            futures.append(client.log_view("SCHEDULE", f"{prefix}-{i}", project_id=prefix))
            i += 1
            time.sleep(0.004)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_a_listener_sees_every_entry_once_in_order_across_forced_socket_drops(gateway: Gateway, marker: str) -> None:
    proxy = TcpProxy(gateway.port)
    seen = Collector()
    listening = AuditClient(proxy.url, api_key=gateway.api_key, flush_at_exit=False, listener_lookback=5)
    writer = AuditClient(gateway.url, api_key=gateway.api_key, linger=0.02, flush_at_exit=False)
    futures: list[Future[Receipt]] = []
    stop = threading.Event()
    try:
        sub = listening.add_listener(seen, project_id=marker)
        assert sub.connected
        thread = write_in_background(writer, marker, futures, stop)
        for _ in range(3):
            time.sleep(0.7)
            proxy.cut_all(refuse_for=0.8)  # the socket dies; reconnections fail for a while
        time.sleep(0.7)
        stop.set()
        thread.join()
        assert writer.flush(timeout=30)
        expected = {f.result().id for f in futures}
        seen.wait_for(len(expected))
        assert_once_in_order(seen.ids(), expected)
        assert sub.reconnects >= 3 and proxy.refused >= 1
        assert sub.caught_up > 0, "nothing was missed while the socket was down: the drill proved nothing"
        print(f"\n{len(expected)} entries, {sub.reconnects} reconnections, {sub.caught_up} caught up over HTTP, "
              f"{sub.duplicates} duplicates dropped")
    finally:
        stop.set()
        listening.close()
        writer.close()
        proxy.close()


def test_a_listener_catches_up_across_a_gateway_restart_with_a_token_provider(
    make_gateway: GatewayFactory, tmp_path: Path, marker: str
) -> None:
    """The gateway signs its development tokens with a secret of each run: after the restart
    the old token is refused, the provider is asked again, and the listener catches up."""
    gw = make_gateway(data_dir=tmp_path / "gw", port=free_port())
    asked: list[str] = []

    def current_token() -> str:
        assert gw.token is not None
        asked.append(gw.token)
        return gw.token

    seen = Collector()
    with AuditClient(gw.url, token_provider=current_token, flush_at_exit=False) as listening, AuditClient(
        gw.url, api_key=gw.api_key, linger=0.02, flush_at_exit=False
    ) as writer:
        sub = listening.add_listener(seen, entity_type="TEMPLATE")
        before = [writer.log_create("TEMPLATE", f"{marker}-a{i}") for i in range(20)]
        assert writer.flush(timeout=10)
        seen.wait_for(20)
        gw.restart()
        after = [writer.log_update("TEMPLATE", f"{marker}-b{i}") for i in range(30)]
        assert writer.flush(timeout=30)
        expected = {f.result().id for f in before + after}
        seen.wait_for(len(expected))
        assert_once_in_order(seen.ids(), expected)
        assert sub.reconnects >= 1
        assert len(set(asked)) == 2, "the token provider was not asked again after the restart"


@pytest.mark.parametrize(("per_mille", "resync"), [("50", 60.0), ("300", 1.0)])
def test_a_listener_sees_every_entry_once_in_order_while_the_feed_fails_posts(
    make_gateway: GatewayFactory, marker: str, per_mille: str, resync: float
) -> None:
    """At 300 per mille the feed's own retries take seconds; the periodic catch-up gets there
    first and the late pushes are dropped as duplicates."""
    gw = make_gateway(env={"AUDITLINE_PUSH_FAULTS_PER_MILLE": per_mille})
    seen = Collector()
    with AuditClient(gw.url, api_key=gw.api_key, flush_at_exit=False, listener_resync=resync) as client:
        sub = client.add_listener(seen, action="UNLINK")
        futures = [client.log_unlink("RELATIONSHIP", f"{marker}-{i}") for i in range(600)]
        client.log_link("RELATIONSHIP", f"{marker}-other")  # filtered out: another action
        assert client.flush(timeout=30)
        expected = {f.result().id for f in futures}
        seen.wait_for(len(expected))
        assert_once_in_order(seen.ids(), expected)
        print(f"\n{len(expected)} entries; {sub.reconnects} reconnections, {sub.caught_up} caught up, "
              f"{sub.duplicates} duplicates dropped")


def test_erasure_reaches_on_erasure_and_async_listeners(gateway: Gateway, marker: str) -> None:
    assert gateway.token is not None  # every scope, audit:erase included

    async def run() -> None:
        entries: list[AuditLogEntry] = []
        notices: list[ErasureNotice] = []

        async def on_entry(entry: AuditLogEntry) -> None:
            entries.append(entry)

        async with AsyncAuditClient(gateway.url, api_key=gateway.api_key) as client:
            sub = await client.add_listener(on_entry, on_erasure=notices.append)
            assert isinstance(sub, Subscription) and sub.connected
            receipt = await client.log_update("FILE", f"{marker}-gdpr", metadata={"email": "a@example.com"})
            async with httpx.AsyncClient(base_url=gateway.url) as http:
                response = await http.post(
                    f"/audit/logs/{receipt.id}/erasure",
                    json={"fields": ["metadata"], "reason": "request 4711"},
                    headers={"Authorization": f"Bearer {gateway.token}"},
                )
                assert response.status_code == 200, response.text
            for _ in range(200):
                if notices:
                    break
                await asyncio.sleep(0.05)
            assert notices and notices[0].entries == [receipt.id] and notices[0].fields == ["metadata"]
            assert receipt.id in [e.id for e in entries]
            assert await client.remove_listener(on_entry)

    asyncio.run(run())


def test_a_listener_can_remove_itself(gateway: Gateway, marker: str) -> None:
    seen: list[str] = []
    with AuditClient(gateway.url, api_key=gateway.api_key, linger=0.01, flush_at_exit=False) as audit:

        def three_then_stop(entry: AuditLogEntry) -> None:
            seen.append(entry.entity_id)
            if len(seen) == 3:
                assert audit.remove_listener(three_then_stop)

        audit.add_listener(three_then_stop, project_id=marker)
        for i in range(10):
            audit.log_view("FILE", f"{marker}-{i}", project_id=marker)
        assert audit.flush(timeout=10)
        time.sleep(0.5)
        with pytest.raises(RuntimeError):
            _add_from_listener(audit, marker)
    assert seen == [f"{marker}-{i}" for i in range(3)]


def _add_from_listener(audit: AuditClient, marker: str) -> None:
    """add_listener() from a listener callback would wait on the very thread that runs it."""
    errors: list[BaseException] = []

    def adds(entry: AuditLogEntry) -> None:
        try:
            audit.add_listener(print, wait=None)
        except RuntimeError as e:
            errors.append(e)

    audit.add_listener(adds, project_id=marker + "-x")
    audit.log_view("FILE", "x", project_id=marker + "-x").result(timeout=10)
    deadline = time.monotonic() + 10
    while not errors and time.monotonic() < deadline:
        time.sleep(0.05)
    audit.remove_listener(adds)
    raise errors[0]
