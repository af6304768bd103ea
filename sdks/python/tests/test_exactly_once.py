"""The exactly-once drill: through a proxy that answers 503 to ~30 % of the writes and cuts ~15 %
of the answers after the gateway wrote them, every entry logged is stored exactly once."""

from __future__ import annotations

import asyncio
import collections
import time

from auditline import AsyncAuditClient, AuditClient, Receipt, Rejected
from conftest import GatewayFactory
from gateway import Gateway
from proxies import HttpFaultProxy


def stored_once(entries: list[dict[str, object]], prefix: str, count: int) -> None:
    counts = collections.Counter(str(e["entity_id"]) for e in entries if str(e["entity_id"]).startswith(prefix))
    twice = {k: v for k, v in counts.items() if v > 1}
    missing = [f"{prefix}{i}" for i in range(count) if f"{prefix}{i}" not in counts]
    assert not twice, f"{len(twice)} entries stored more than once, e.g. {list(twice.items())[:5]}"
    assert not missing, f"{len(missing)} entries lost, e.g. {missing[:5]}"
    assert len(counts) == count


def test_sync_client_stores_each_entry_exactly_once_through_503s_and_cut_answers(
    make_gateway: GatewayFactory,
) -> None:
    gw = make_gateway()
    proxy = HttpFaultProxy(gw.port, fail=0.30, cut=0.15, seed=11)
    n = 2000
    try:
        client = AuditClient(
            proxy.url, api_key=gw.api_key, max_batch=25, linger=0.05, backoff_base=0.01, backoff_max=0.2,
            flush_at_exit=False,
        )
        started = time.monotonic()
        futures = [
            client.log_create("FILE", f"drill-{i}", metadata={"drill": "sync", "n": i}) for i in range(n)
        ]
        assert client.flush(timeout=120), "flush did not finish"
        receipts = [f.result(timeout=0) for f in futures]
        client.close()
        elapsed = time.monotonic() - started
    finally:
        proxy.close()
    assert all(isinstance(r, Receipt) for r in receipts)
    assert len({r.id for r in receipts}) == n, "two entries got the same receipt"
    # The faults happened, and the retries met them.
    assert proxy.failed > 10 and proxy.cut_off > 5, (proxy.failed, proxy.cut_off)
    assert any(r.replayed for r in receipts), "no retry was answered from the idempotency record"
    entries = gw.all_entries(entity_type="FILE")
    stored_once(entries, "drill-", n)
    by_id = {str(e["id"]): e for e in entries}
    for i, r in enumerate(receipts):  # each receipt names the entry stored for that call
        assert by_id[r.id]["entity_id"] == f"drill-{i}"
        assert r.leaf_hash == by_id[r.id]["integrity"]["leaf_hash"]  # type: ignore[index]
    print(
        f"\n{n} entries in {elapsed:.1f} s through {proxy.requests} requests: "
        f"{proxy.failed} answered 503, {proxy.cut_off} cut after the write"
    )


def test_async_client_stores_each_entry_exactly_once_through_503s_and_cut_answers(
    make_gateway: GatewayFactory,
) -> None:
    gw = make_gateway()
    proxy = HttpFaultProxy(gw.port, fail=0.30, cut=0.15, seed=5)
    n = 1000

    async def run() -> list[Receipt]:
        async with AsyncAuditClient(
            proxy.url, api_key=gw.api_key, max_batch=20, linger=0.05, backoff_base=0.01, backoff_max=0.2,
            max_in_flight=2,
        ) as client:
            handles = [client.log_delete("ENTITY", f"adrill-{i}", project_id="drill") for i in range(n)]
            assert await client.flush(timeout=120)
            return [await h for h in handles]

    try:
        receipts = asyncio.run(run())
    finally:
        proxy.close()
    assert len({r.id for r in receipts}) == n
    assert proxy.failed > 5 and proxy.cut_off > 2, (proxy.failed, proxy.cut_off)
    stored_once(gw.all_entries(entity_type="ENTITY"), "adrill-", n)


def test_503s_are_retried_without_limit_and_500s_max_attempts_times(gateway: Gateway) -> None:
    unavailable = HttpFaultProxy(gateway.port, fail=1.0)
    broken = HttpFaultProxy(gateway.port, fail=1.0, fail_status=500)
    try:
        options = {"api_key": gateway.api_key, "backoff_base": 0.01, "backoff_max": 0.02, "flush_at_exit": False}
        patient = AuditClient(unavailable.url, **options)  # type: ignore[arg-type]
        waiting = patient.log_create("FILE", "never-stored")
        assert not patient.flush(timeout=1.0) and unavailable.failed > 10 and not waiting.done()
        patient.close(timeout=0)
        limited = AuditClient(broken.url, max_attempts=3, **options)  # type: ignore[arg-type]
        error = limited.log_create("FILE", "refused").exception(timeout=10)
        assert isinstance(error, Rejected) and (error.status, error.code) == (500, "internal_error")
        assert broken.failed == 3
        limited.close()
    finally:
        unavailable.close()
        broken.close()
