"""The synchronous client's calls against the real gateway: writes, receipts, rejections, reads,
export, queue policies, credentials."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest

from auditline import (
    Action,
    AuditClient,
    AuditlineError,
    AuthError,
    BadRequest,
    Dropped,
    EntityType,
    InvalidEntry,
    NotDelivered,
    NotFound,
    Page,
    QueueFull,
    Receipt,
    Rejected,
    Stats,
)
from gateway import Gateway, free_port


def client_for(gw: Gateway, **options: Any) -> AuditClient:
    options.setdefault("linger", 0.02)
    options.setdefault("flush_at_exit", False)
    return AuditClient(gw.url, api_key=gw.api_key, **options)


class CountingTransport(httpx.HTTPTransport):
    def __init__(self) -> None:
        super().__init__()
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return super().handle_request(request)


def test_each_seed_call_stores_its_action_and_resolves_to_a_receipt(gateway: Gateway, marker: str) -> None:
    with client_for(gateway) as audit:
        futures = {
            "CREATE": audit.log_create(
                EntityType.ENTITY, f"{marker}-e", project_id=f"{marker}-p", changes={"name": "New Entity"}
            ),
            "UPDATE": audit.log_update(
                "ENTITY", f"{marker}-e", changes={"before": {"name": "Old"}, "after": {"name": "New"}}
            ),
            "DELETE": audit.log_delete("FILE", f"{marker}-f", project_id=f"{marker}-p"),
            "LINK": audit.log_link("ENTITY", f"{marker}-e", metadata={"target_id": "x", "target_type": "PROJECT"}),
            "UNLINK": audit.log_unlink("ENTITY", f"{marker}-e", metadata={"target_id": "x"}),
            "VIEW": audit.log_view("REPORT", f"{marker}-r"),
        }
        generic = audit.log(Action.UPDATE, "template", f"{marker}-t", metadata={"actor": "alice"})
        assert audit.flush(timeout=10)
        for action, future in [*futures.items(), ("UPDATE", generic)]:
            receipt = future.result(timeout=0)
            assert isinstance(receipt, Receipt)
            stored = audit.get_log(receipt.id)
            assert stored.action == action
            assert receipt.leaf_hash == stored.integrity.leaf_hash and len(receipt.leaf_hash) == 64
            assert receipt.timestamp == stored.timestamp and receipt.entry == stored
            assert stored.user_id == "developer" and stored.ip_address == "127.0.0.1"
            assert stored.tenant_id == "local"
        assert audit.get_log(generic.result().id).entity_type == "TEMPLATE"
        assert audit.get_log(futures["LINK"].result().id).metadata == {"target_id": "x", "target_type": "PROJECT"}


def test_rejections_carry_the_servers_envelope_and_reach_callbacks(gateway: Gateway, marker: str) -> None:
    rejected: list[AuditlineError] = []
    results: list[object] = []
    with client_for(gateway, on_rejected=rejected.append) as audit:
        good = audit.log_create("FILE", f"{marker}-ok", on_result=results.append)
        bad = audit.log_create("FILE", "bad\u0001id", metadata={"m": marker}, on_result=results.append)
        assert audit.flush(timeout=10)
    assert isinstance(good.result(), Receipt)
    error = bad.exception(timeout=0)
    assert isinstance(error, Rejected)
    assert (error.status, error.code, error.parameter) == (400, "invalid_entry", "entity_id")
    assert error.request_id and error.message
    assert error.entry == {"action": "CREATE", "entity_type": "FILE", "entity_id": "bad\u0001id", "metadata": {"m": marker}}
    assert rejected == [error]
    assert results == [good.result(), error]


def test_cheap_local_checks_refuse_entries_before_they_are_queued(gateway: Gateway) -> None:
    with client_for(gateway) as audit:
        bad_calls: list[Callable[[], object]] = [
            lambda: audit.log("PUBLISH", "FILE", "x"),
            lambda: audit.log_create("AUDIT_ENTRY", "x"),
            lambda: audit.log_create("WIDGET", "x"),
            lambda: audit.log_create("FILE", ""),
            lambda: audit.log_create("FILE", "x" * 257),
            lambda: audit.log_create("FILE", "x", project_id=""),
            lambda: audit.log_create("FILE", "x", metadata={"when": object()}),
            lambda: audit.log_create("FILE", "x", changes={"ratio": float("nan")}),
            lambda: audit.log_create("FILE", "x", changes=[1, 2]),  # type: ignore[arg-type]
            lambda: audit.log_create("FILE", "x", changes={"blob": "x" * (1024 * 1024)}),
        ]
        for call in bad_calls:
            with pytest.raises(InvalidEntry):
                call()
        assert audit.queued == 0
        # Names are taken in any case; what is sent is the service's spelling.
        receipt = audit.log("create", "file", "case").result(timeout=10)
        assert audit.get_log(receipt.id).action == "CREATE"


def test_reads_iterate_every_page_lazily(gateway: Gateway, marker: str) -> None:
    transport = CountingTransport()
    with client_for(gateway, transport=transport) as audit:
        for i in range(25):
            audit.log_create("PROJECT", f"{marker}-{i}", project_id=marker, metadata={"i": i})
        audit.log_view("PROJECT", f"{marker}-0", project_id=marker)
        assert audit.flush(timeout=10)
        transport.requests.clear()
        entries = audit.get_logs_by_project(marker, page_size=10)
        assert transport.requests == [], "nothing is read before iterating"
        listed = list(entries)
        assert len(listed) == 26 and len(transport.requests) == 3
        assert [e.id for e in listed] == sorted((e.id for e in listed), reverse=True), "newest first"
        transport.requests.clear()
        assert len(list(audit.get_logs_by_project(marker, action="CREATE", limit=12, page_size=10))) == 12
        assert len(transport.requests) == 2
        assert [e.action for e in audit.get_logs_by_entity(f"{marker}-0")] == ["VIEW", "CREATE"]
        since = listed[-1].time - dt.timedelta(milliseconds=1)
        mine = [e for e in audit.get_logs(entity_type="PROJECT", start_date=since) if e.project_id == marker]
        assert len(mine) == 26
        page = audit.get_page(project_id=marker, limit=10)
        assert isinstance(page, Page) and page.count == 10 and page.next_token
        rest = audit.get_page(project_id=marker, limit=10, next_token=page.next_token)
        assert {e.id for e in rest.entries}.isdisjoint(e.id for e in page.entries)
        assert len(list(audit.get_logs(user_id="nobody", entity_type=EntityType.PROJECT))) == 0


def test_pages_bounded_in_bytes_and_an_export_of_several_pages(gateway: Gateway, marker: str, tmp_path: Path) -> None:
    blob = "x" * 60_000
    with client_for(gateway) as audit:
        for i in range(45):  # ~2.7 MB of entries: more than one 2 MiB page
            audit.log_update("SCHEDULE", f"{marker}-{i}", project_id=marker, changes={"blob": blob})
        assert audit.flush(timeout=30)
        assert len(list(audit.get_logs_by_project(marker, page_size=1000))) == 45
        result = audit.export("jsonl", tmp_path / "big.jsonl", project_id=marker)
        assert result.entries == 45 and result.pages >= 2
        lines = (tmp_path / "big.jsonl").read_text().splitlines()
        assert len(lines) == 45 and {json.loads(line)["project_id"] for line in lines} == {marker}


def test_export_formats(gateway: Gateway, marker: str, tmp_path: Path) -> None:
    with client_for(gateway) as audit:
        for i in range(5):
            audit.log_create("REPORT", f"{marker}-{i}", project_id=marker, metadata={"formula": "=1+1"})
        assert audit.flush(timeout=10)
        for fmt in ("jsonl", "csv", "ocsf"):
            path = tmp_path / f"out.{fmt}"
            result = audit.export(fmt, path, project_id=marker, action="CREATE")
            assert result.entries == 5 and result.pages == 1 and result.path == str(path)
            assert not Path(str(path) + ".part").exists()
            text = path.read_text()
            if fmt == "csv":
                assert text.startswith("id,timestamp,") and len(text.splitlines()) == 6
            else:
                assert len(text.splitlines()) == 5 and all(json.loads(line) for line in text.splitlines())
        with pytest.raises(ValueError):
            audit.export("xml", tmp_path / "x")


def test_stats_health_and_typed_errors(gateway: Gateway) -> None:
    with client_for(gateway) as audit:
        audit.log_view("FILE", "stats").result(timeout=10)
        stats = audit.get_stats(start_date=dt.date.today() - dt.timedelta(days=1), bucket="hour")
        assert isinstance(stats, Stats) and stats.total_entries >= 1 and stats.bucket == "hour"
        assert stats.series and sum(p.total for p in stats.series) == stats.total_entries
        assert set(stats.by_action) == {a.value for a in Action}
        health = audit.get_health()
        assert health.status == "healthy" and health.storage is not None and health.storage.backend == "memory"
        with pytest.raises(NotFound) as missing:
            audit.get_log(str(uuid.uuid4()))
        assert missing.value.status == 404 and missing.value.code == "not_found" and missing.value.request_id
        with pytest.raises(BadRequest) as invalid:
            audit.get_log("not-an-id")
        assert invalid.value.parameter == "id"
        with pytest.raises(BadRequest) as inverted:
            list(audit.get_logs(start_date="2026-01-02", end_date="2026-01-01"))
        assert inverted.value.code == "invalid_parameter"
    with AuditClient(gateway.url, api_key="alk_not-a-key", flush_at_exit=False) as stranger:
        with pytest.raises(AuthError) as refused:
            stranger.get_log(str(uuid.uuid4()))
        assert refused.value.status == 403
        pending = stranger.log_create("FILE", "x")
        assert not stranger.flush(timeout=0.3) and not pending.done(), "a refused write stays queued"
        stranger.close(timeout=0.1)
        refused_write = pending.exception(timeout=0)
        assert isinstance(refused_write, AuthError) and refused_write.status == 403


def test_token_and_token_provider(gateway: Gateway, marker: str) -> None:
    assert gateway.token is not None
    with AuditClient(gateway.url, token=gateway.token, flush_at_exit=False) as audit:
        receipt = audit.log_create("FILE", f"{marker}-token").result(timeout=10)
        assert audit.get_log(receipt.id).user_id == "developer"
    tokens = iter(["expired-or-bad", gateway.token])
    asked: list[int] = []

    def provider() -> str:
        asked.append(1)
        return next(tokens)

    with AuditClient(gateway.url, token_provider=provider, flush_at_exit=False) as audit:
        assert isinstance(audit.log_create("FILE", f"{marker}-provider").result(timeout=10), Receipt)
        assert len(asked) == 2, "a refused token is fetched again, once"
        assert audit.get_health().status == "healthy"
    with pytest.raises(ValueError):
        AuditClient(gateway.url, api_key="a", token="b")


def test_queue_full_policies_when_the_service_is_unreachable() -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    with AuditClient(closed, api_key="k", max_queue=5, on_full="raise", backoff_max=0.1, flush_at_exit=False) as audit:
        pending = [audit.log_create("FILE", f"r-{i}") for i in range(5)]
        with pytest.raises(QueueFull):
            audit.log_create("FILE", "one too many")
        assert not audit.close(timeout=0.1)
    assert all(isinstance(f.exception(timeout=0), NotDelivered) for f in pending)

    audit = AuditClient(closed, api_key="k", max_queue=3, on_full="block", block_timeout=0.3, flush_at_exit=False)
    for i in range(3):
        audit.log_create("FILE", f"b-{i}")
    began = time.monotonic()
    with pytest.raises(QueueFull):
        audit.log_create("FILE", "blocked")
    assert time.monotonic() - began >= 0.3
    audit.close(timeout=0)

    audit = AuditClient(closed, api_key="k", max_queue=3, on_full="drop_oldest", linger=60, flush_at_exit=False)
    first = audit.log_create("FILE", "d-0")
    for i in range(1, 4):
        audit.log_create("FILE", f"d-{i}")
    assert isinstance(first.exception(timeout=0), Dropped) and audit.queued == 3
    audit.close(timeout=0)
    with pytest.raises(AuditlineError):
        audit.log_create("FILE", "after close")


def test_block_policy_applies_backpressure_and_loses_nothing(gateway: Gateway, marker: str) -> None:
    with client_for(gateway, max_queue=10, linger=5.0, on_full="block") as audit:
        futures = [audit.log_create("FILE", f"{marker}-{i}") for i in range(200)]
        assert audit.flush(timeout=30)
    assert len({f.result().id for f in futures}) == 200


def test_entries_left_unflushed_are_sent_at_interpreter_exit(gateway: Gateway, marker: str) -> None:
    script = textwrap.dedent(
        f"""
        from auditline import AuditClient
        audit = AuditClient({gateway.url!r}, api_key={gateway.api_key!r}, linger=30)
        for i in range(150):
            audit.log_create("FILE", "{marker}-" + str(i))
        # no flush, no close: the atexit hook sends them
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    stored = [e for e in gateway.all_entries(entity_type="FILE") if str(e["entity_id"]).startswith(marker)]
    assert len(stored) == 150


def test_a_forked_child_starts_afresh_and_sends_nothing_twice(gateway: Gateway, marker: str) -> None:
    audit = client_for(gateway, linger=30)
    for i in range(5):
        audit.log_create("FILE", f"{marker}-parent-{i}")
    pid = os.fork()
    if pid == 0:  # the child: the parent's queue is not its own
        code = 1
        try:
            code = 0 if audit.queued == 0 else 2
            futures = [audit.log_create("FILE", f"{marker}-child-{i}") for i in range(3)]
            code = code or (0 if audit.flush(timeout=20) and all(f.result(0) for f in futures) else 3)
            audit.close()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert audit.flush(timeout=20)
    audit.close()
    stored = sorted(str(e["entity_id"]) for e in gateway.all_entries(entity_type="FILE") if marker in str(e["entity_id"]))
    assert stored == sorted([f"{marker}-parent-{i}" for i in range(5)] + [f"{marker}-child-{i}" for i in range(3)])
