"""The asyncio client: the same calls, awaited."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from auditline import (
    AsyncAuditClient,
    AuditLogEntry,
    Dropped,
    LogHandle,
    NotDelivered,
    NotFound,
    QueueFull,
    Receipt,
    Rejected,
)
from gateway import Gateway, free_port


async def test_log_calls_return_awaitable_handles(gateway: Gateway, marker: str) -> None:
    results: list[object] = []
    async with AsyncAuditClient(gateway.url, api_key=gateway.api_key, linger=0.02) as audit:
        handles = [
            audit.log_create("ENTITY", f"{marker}-1", project_id=marker, changes={"name": "New Entity"}),
            audit.log_update("ENTITY", f"{marker}-1", project_id=marker, on_result=results.append),
            audit.log_delete("ENTITY", f"{marker}-1", project_id=marker),
            audit.log_link("ENTITY", f"{marker}-1", project_id=marker, metadata={"target_id": f"{marker}-2"}),
            audit.log_unlink("ENTITY", f"{marker}-1", project_id=marker, metadata={"target_id": f"{marker}-2"}),
            audit.log_view("ENTITY", f"{marker}-1", project_id=marker),
            audit.log("VIEW", "REPORT", f"{marker}-r", project_id=marker),
        ]
        assert all(isinstance(h, LogHandle) for h in handles)
        receipts = [await h for h in handles]
        assert all(isinstance(r, Receipt) and r.leaf_hash for r in receipts)
        assert results == [receipts[1]] and handles[1].done() and handles[1].result() == receipts[1]
        entry = await audit.get_log(receipts[0].id)
        assert isinstance(entry, AuditLogEntry) and entry.changes == {"name": "New Entity"}
        listed = [e async for e in audit.get_logs_by_project(marker, page_size=3)]
        assert [e.id for e in listed] == sorted((r.id for r in receipts), reverse=True)
        assert len([e async for e in audit.get_logs_by_entity(f"{marker}-1", action="LINK")]) == 1
        assert len([e async for e in audit.get_logs(entity_type="REPORT", limit=1)]) == 1
        page = await audit.get_page(project_id=marker, limit=5)
        assert page.count == 5 and page.next_token
        stats = await audit.get_stats(bucket="day")
        assert stats.total_entries >= 7 and stats.series is not None
        assert (await audit.get_health()).status == "healthy"
        with pytest.raises(NotFound):
            await audit.get_log("01890a5d-ac96-774b-bcce-b302099a8057")
        bad = audit.log_create("FILE", "tab\tinside")
        with pytest.raises(Rejected) as refused:
            await bad
        assert refused.value.parameter == "entity_id" and refused.value.request_id


async def test_export_and_flush(gateway: Gateway, marker: str, tmp_path: Path) -> None:
    async with AsyncAuditClient(gateway.url, api_key=gateway.api_key) as audit:
        for i in range(30):
            audit.log_create("FILE", f"{marker}-{i}", project_id=marker)
        assert audit.queued == 30
        assert await audit.flush(timeout=10)
        assert audit.queued == 0
        result = await audit.export("jsonl", tmp_path / "files.jsonl", project_id=marker)
        assert result.entries == 30
        lines = (tmp_path / "files.jsonl").read_text().splitlines()
        assert {json.loads(line)["entity_id"] for line in lines} == {f"{marker}-{i}" for i in range(30)}


async def test_queue_policies_without_blocking_the_loop() -> None:
    with pytest.raises(ValueError):
        AsyncAuditClient("http://127.0.0.1:1", api_key="k", on_full="block")
    closed = f"http://127.0.0.1:{free_port()}"
    audit = AsyncAuditClient(closed, api_key="k", max_queue=2, backoff_max=0.1)
    first = audit.log_create("FILE", "a")
    audit.log_create("FILE", "b")
    with pytest.raises(QueueFull):
        audit.log_create("FILE", "c")
    assert not await audit.flush(timeout=0.2)
    assert not await audit.close(timeout=0.1)
    with pytest.raises(NotDelivered):
        await first

    audit = AsyncAuditClient(closed, api_key="k", max_queue=2, on_full="drop_oldest", linger=60)
    dropped = audit.log_create("FILE", "a")
    audit.log_create("FILE", "b")
    audit.log_create("FILE", "c")
    with pytest.raises(Dropped):
        await dropped
    await audit.close(timeout=0)


def test_the_async_client_is_used_from_its_loop(gateway: Gateway) -> None:
    audit = AsyncAuditClient(gateway.url, api_key=gateway.api_key)
    with pytest.raises(RuntimeError, match="event loop"):
        audit.log_create("FILE", "outside")

    async def inside() -> Receipt:
        try:
            return await audit.log_create("FILE", "inside")
        finally:
            await audit.close()

    assert isinstance(asyncio.run(inside()), Receipt)
