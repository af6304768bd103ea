"""A credential the service refuses while entries are being written loses none of them: the
entries stay queued (and spooled), each refusal is logged with its ``AuthError``, and once the
credential is good again — a token provider that returns a valid token, an authorizer back from
an outage, the next client on the spool with the new key — every entry is stored exactly once.
Only ``close()`` without a spool gives up on them, failing their handles with the ``AuthError``.
All against the real gateway (the authorizer's outage through a proxy answering 403 as it does)."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest

from auditline import AsyncAuditClient, AuditClient, AuditlineError, AuthError, NotDelivered, Receipt, Rejected
from conftest import GatewayFactory
from proxies import HttpFaultProxy
from test_auth import refusals, wait_for_refusals
from test_exactly_once import stored_once



def test_refused_writes_wait_for_a_valid_token_and_are_stored_once(
    make_gateway: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    gw = make_gateway()
    assert gw.token is not None
    caplog.set_level(logging.WARNING, logger="auditline")
    valid = threading.Event()
    asked: list[bool] = []

    def provider() -> str:
        asked.append(valid.is_set())
        return gw.token if valid.is_set() and gw.token else "an-expired-token"

    settled: list[object] = []
    with AuditClient(gw.url, token_provider=provider, max_batch=10, flush_at_exit=False, linger=0.01, backoff_base=0.01, backoff_max=0.1) as audit:
        futures = [audit.log_create("FILE", f"tok-{i}", on_result=settled.append) for i in range(25)]
        for refusal in wait_for_refusals(caplog, 4):
            assert (refusal.status, refusal.code) == (403, "forbidden")
        assert not audit.flush(timeout=0.3), "nothing is stored while the token is refused"
        assert not any(f.done() for f in futures) and not settled and audit.queued == 25
        assert len(asked) >= 5, "each attempt asks the provider again (once) before waiting"

        valid.set()  # the provider's token is good again
        assert audit.flush(timeout=30)
        receipts = [f.result(timeout=0) for f in futures]
        assert all(isinstance(r, Receipt) for r in receipts) and len({r.id for r in receipts}) == 25
        assert len(settled) == 25 and audit.queued == 0

        # A 400 is still a rejection of that entry, at once (not a retry).
        invalid = audit.log_create("FILE", "tab\tinside")
        rejected = invalid.exception(timeout=10)
        assert isinstance(rejected, Rejected) and rejected.status == 400 and rejected.parameter == "entity_id"
    stored_once(gw.all_entries(), "tok-", 25)


async def test_an_authorizer_outage_answering_403_delays_writes_and_loses_none(
    make_gateway: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    gw = make_gateway()
    caplog.set_level(logging.WARNING, logger="auditline")
    proxy = HttpFaultProxy(gw.port, fail=1.0, fail_status=403)  # every write refused, as the authorizer does
    try:
        async with AsyncAuditClient(proxy.url, api_key=gw.api_key, max_batch=10, linger=0.01, backoff_base=0.01, backoff_max=0.1) as audit:
            handles = [audit.log_update("REPORT", f"outage-{i}") for i in range(30)]
            assert not await audit.flush(timeout=1.0)
            assert not any(h.done() for h in handles) and audit.queued == 30
            logged = refusals(caplog)
            assert len(logged) >= 3 and all((e.status, e.code, e.request_id) == (403, "forbidden", None) for e in logged)

            proxy.fail = 0.0  # the authorizer is back
            assert await audit.flush(timeout=30)
            assert all(isinstance(r, Receipt) for r in [await h for h in handles])
    finally:
        proxy.close()
    stored_once(gw.all_entries(), "outage-", 30)


def test_close_without_a_spool_fails_refused_entries_with_the_auth_error(make_gateway: GatewayFactory) -> None:
    gw = make_gateway()
    errors: list[AuditlineError] = []
    audit = AuditClient(gw.url, api_key="alk_revoked", on_rejected=errors.append, flush_at_exit=False, linger=0.01, backoff_base=0.01, backoff_max=0.1)
    futures = [audit.log_create("FILE", f"gone-{i}") for i in range(12)]
    assert not audit.flush(timeout=0.5) and not any(f.done() for f in futures)
    assert not audit.close(timeout=0.1)
    failures = [f.exception(timeout=0) for f in futures]
    assert all(isinstance(e, AuthError) and (e.status, e.code) == (403, "forbidden") for e in failures), failures
    assert len({id(e) for e in failures}) == 12, "each handle has its own error"
    assert len(errors) == 12 and all(isinstance(e, AuthError) for e in errors), "on_rejected hears of each"
    assert not [e for e in gw.all_entries() if str(e["entity_id"]).startswith("gone-")]


async def test_close_without_a_spool_fails_refused_entries_with_the_auth_error_async(make_gateway: GatewayFactory) -> None:
    gw = make_gateway()
    audit = AsyncAuditClient(gw.url, api_key="alk_revoked", linger=0.01, backoff_base=0.01, backoff_max=0.1)
    handles = [audit.log_create("FILE", f"gone-{i}") for i in range(5)]
    assert not await audit.flush(timeout=0.5) and not any(h.done() for h in handles)
    assert not await audit.close(timeout=0.1)
    for handle in handles:
        with pytest.raises(AuthError) as refused:
            await handle
        assert (refused.value.status, refused.value.code) == (403, "forbidden")


def test_with_a_spool_refused_entries_wait_there_for_the_next_client_with_a_valid_key(
    make_gateway: GatewayFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gw = make_gateway()
    caplog.set_level(logging.WARNING, logger="auditline")
    spool = tmp_path / "spool"
    first = AuditClient(gw.url, api_key="alk_rotated-away", spool_dir=spool, max_batch=10, flush_at_exit=False, linger=0.01, backoff_base=0.01, backoff_max=0.1)
    futures = [first.log_create("FILE", f"spooled-{i}") for i in range(25)]
    wait_for_refusals(caplog, 2)
    assert not first.flush(timeout=0.3) and not any(f.done() for f in futures)
    assert not first.close(timeout=0.1)
    left = [f.exception(timeout=0) for f in futures]
    assert all(isinstance(e, NotDelivered) and e.spooled for e in left), left

    started = time.monotonic()
    second = AuditClient(gw.url, api_key=gw.api_key, spool_dir=spool, flush_at_exit=False)  # the new key
    assert second.recovered == 25
    assert second.flush(timeout=30) and time.monotonic() - started < 30
    second.close()
    stored_once(gw.all_entries(), "spooled-", 25)
