"""The spool: entries survive the service being down, a gateway restart, and an application that
stops (or is killed mid-send) and starts again on the same spool directory."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import Future
from pathlib import Path

import pytest

from auditline import AuditClient, NotDelivered, Receipt, SpoolError
from auditline._spool import Spool
from conftest import GatewayFactory
from gateway import Gateway, free_port
from proxies import HttpFaultProxy
from test_exactly_once import stored_once

#: Seconds the gateway stays down in the restart drill (run-tests.sh sets 30, the issue's figure).
DOWNTIME = float(os.environ.get("AUDITLINE_SDK_DOWNTIME", "5"))


def segments(spool: Path) -> list[str]:
    return sorted(p.name for p in spool.iterdir() if p.name.endswith(".seg"))


def test_entries_logged_while_the_service_is_down_are_sent_by_the_next_client_on_the_spool(
    make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    gw = make_gateway(data_dir=tmp_path / "gw", port=free_port())
    gw.stop()  # down: connections are refused
    spool = tmp_path / "spool"
    first = AuditClient(gw.url, api_key=gw.api_key, spool_dir=spool, backoff_max=0.3, flush_at_exit=False)
    futures = [first.log_update("REPORT", f"down-{i}", changes={"after": {"n": i}}) for i in range(500)]
    assert not first.flush(timeout=1.0), "nothing can be stored while the service is down"
    assert first.queued == 500
    assert not first.close(timeout=0.1)
    errors = [f.exception(timeout=0) for f in futures]
    assert all(isinstance(e, NotDelivered) and e.spooled for e in errors)
    assert len(segments(spool)) == 5  # five batches of 100, each its own file

    gw.start()  # the same data directory, port and API key
    second = AuditClient(gw.url, api_key=gw.api_key, spool_dir=spool, flush_at_exit=False)
    assert second.recovered == 500
    assert second.flush(timeout=30)
    assert second.close()
    assert segments(spool) == []
    stored_once(gw.all_entries(entity_type="REPORT"), "down-", 500)


def test_nothing_spooled_is_lost_across_a_gateway_restart(make_gateway: GatewayFactory, tmp_path: Path) -> None:
    gw = make_gateway(data_dir=tmp_path / "gw", port=free_port())
    client = AuditClient(
        gw.url, api_key=gw.api_key, spool_dir=tmp_path / "spool", linger=0.05, backoff_max=1.0, flush_at_exit=False
    )
    futures: list[Future[Receipt]] = []
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set():
            futures.append(client.log_create("PROJECT", f"restart-{i}", metadata={"phase": "any"}))
            i += 1
            time.sleep(0.01)

    thread = threading.Thread(target=writer)
    thread.start()
    time.sleep(1.0)
    gw.stop()  # a clean stop: in-flight requests finish (a kill -9 is the next test's subject)
    down_since = len(futures)
    time.sleep(DOWNTIME)
    logged_while_down = len(futures) - down_since
    gw.start()
    time.sleep(1.0)
    stop.set()
    thread.join()
    assert client.flush(timeout=60)
    assert client.close()
    n = len(futures)
    assert logged_while_down > 50
    assert all(isinstance(f.result(timeout=0), Receipt) for f in futures)
    stored_once(gw.all_entries(entity_type="PROJECT"), "restart-", n)
    print(f"\n{n} entries, {logged_while_down} of them logged during {DOWNTIME:.0f} s of downtime: all stored once")


CHILD = textwrap.dedent(
    """
    import sys, time
    from auditline import AuditClient
    url, key, spool = sys.argv[1:4]
    client = AuditClient(url, api_key=key, spool_dir=spool, max_batch=50, linger=60, flush_at_exit=False)
    for i in range(200):
        client.log_link("RELATIONSHIP", f"crash-{i}", metadata={"target_id": f"t-{i}", "target_type": "ENTITY"})
    print("logged", flush=True)
    client.flush()
    """
)


def test_an_application_killed_mid_send_loses_and_duplicates_nothing(gateway: Gateway, tmp_path: Path) -> None:
    """The first batch reaches the gateway (stored) but its answer never comes back; the
    application is killed (SIGKILL); a new one on the same spool re-sends that batch under its
    persisted key (answered from the idempotency record) and the three others."""
    holding = HttpFaultProxy(gateway.port, hold=True)
    spool = tmp_path / "spool"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, holding.url, gateway.api_key, str(spool)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline().decode()  # every log_* returned: all 200 are spooled
        assert line.strip() == "logged", line + (child.stderr.read().decode() if child.stderr else "")
        deadline = time.monotonic() + 30
        while holding.forwarded < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        if holding.forwarded != 1:
            child.kill()
            errors = child.stderr.read().decode() if child.stderr else ""
            raise AssertionError(f"the first batch never reached the gateway ({holding.requests} requests):\n{errors}")
        time.sleep(0.2)
        child.kill()
        child.wait()
    finally:
        holding.close()
    before = [e for e in gateway.all_entries(entity_type="RELATIONSHIP") if str(e["entity_id"]).startswith("crash-")]
    assert len(before) == 50  # the batch that got through, answer lost

    restarted = AuditClient(gateway.url, api_key=gateway.api_key, spool_dir=spool, flush_at_exit=False)
    assert restarted.recovered == 200
    assert restarted.flush(timeout=30)
    assert restarted.close()
    stored_once(gateway.all_entries(entity_type="RELATIONSHIP"), "crash-", 200)
    assert segments(spool) == []


def test_a_torn_last_record_is_cut_off_and_the_rest_kept(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    writer = spool.open_batch("k1")
    spool.append(writer, b'{"a":1}')
    spool.append(writer, b'{"a":2}')
    os.write(writer.fd, b"\x01\x20\x00\x00\x00garbage")  # a record a crash cut short
    spool.close()
    again = Spool(tmp_path)
    [batch] = again.recover()
    assert batch.key == "k1" and batch.payloads == [b'{"a":1}', b'{"a":2}']
    assert segments(tmp_path) == [f"batch-{writer.seq:012d}-k1.seg"]
    again.close()


def test_entries_moved_to_a_new_batch_are_not_sent_again_from_the_old_one(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    writer = spool.open_batch("old")
    for n in range(3):
        spool.append(writer, f'{{"n":{n}}}'.encode())
    spool.seal(writer)
    spool.write_batch("new", [b'{"n":1}'], ("old", [1]))  # position 1 answered period_sealed
    spool.close()
    again = Spool(tmp_path)
    batches = {b.key: b for b in again.recover()}
    assert batches["old"].moved == {1}
    assert batches["new"].payloads == [b'{"n":1}'] and not batches["new"].moved
    again.close()


def test_one_client_per_spool_directory(tmp_path: Path) -> None:
    first = Spool(tmp_path)
    with pytest.raises(SpoolError, match="in use"):
        Spool(tmp_path)
    first.close()
    Spool(tmp_path).close()
