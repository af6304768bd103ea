"""The write path's decisions, on answers shaped by the contract (each validated against
docs/openapi.json first): what is stored, retried under the same key, re-sent under a new key,
or rejected. These are the cases the real gateway cannot be made to produce on demand (a batch
whose period was sealed between two attempts, a compact idempotency replay, a 413)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from auditline import Receipt, Rejected
from auditline._common import Backoff, Credentials, encode_entry
from auditline._pipeline import AUTH_RETRY_CAP, Batch, Delivery, Item, Pipeline, judge
from auditline._spool import Spool
from test_contract import component, validate

LEAF = "ab" * 32


def entry_json(n: int) -> dict[str, Any]:
    return {
        "id": f"01890a5d-ac96-774b-bcce-b30209{n:06d}",
        "timestamp": "2026-12-06T10:00:00.000Z",
        "action": "CREATE",
        "entity_type": "FILE",
        "entity_id": f"f-{n}",
        "project_id": None,
        "user_id": "developer",
        "changes": None,
        "ip_address": "127.0.0.1",
        "metadata": None,
        "tenant_id": "local",
        "expires_at": 1800000000,
        "integrity": {"format": "auditline-leaf/1", "leaf_hash": LEAF, "seed": "c2VlZA"},
    }


def error_json(code: str, message: str = "m") -> dict[str, Any]:
    return {"code": code, "message": message, "request_id": "01890a5d-ac96-774b-bcce-b302099a8057"}


def answer(results: list[dict[str, Any]]) -> bytes:
    stored = sum(1 for r in results if "entry" in r)
    body = {"results": results, "stored": stored, "rejected": len(results) - stored}
    validate(body, component("BatchResult"))
    return json.dumps(body).encode()


def batch_of(pipe: Pipeline, n: int) -> Batch:
    for i in range(n):
        pipe.add(Item(encode_entry("CREATE", "FILE", f"f-{i}", None, None, None), None, None), 0.0)
    batch = pipe.take(0.0, force=True)
    assert batch is not None
    return batch


def new_pipe(spool: Spool | None = None, **options: Any) -> Pipeline:
    settings: dict[str, Any] = {"max_batch": 100, "max_bytes": 1 << 20, "linger": 1.0, "max_queue": 1000}
    settings.update(options)
    return Pipeline(spool=spool, **settings)


def test_a_partial_answer_stores_retries_resends_and_rejects_each_entry_as_it_says() -> None:
    pipe = new_pipe()
    batch = batch_of(pipe, 4)
    key, body = batch.key, batch.request_body()
    results = [
        {"index": 0, "status": 201, "entry": entry_json(0)},
        {"index": 1, "status": 503, "error": error_json("unavailable")},
        {"index": 2, "status": 409, "error": error_json("period_sealed")},
        {"index": 3, "status": 400, "error": {**error_json("invalid_entry"), "parameter": "entity_id"}},
    ]
    verdict = judge(batch, 207, httpx.Headers({"retry-after": "1"}), answer(results))
    assert [p for p, _ in verdict.stored] == [0] and verdict.requeue == [2] and verdict.retry
    assert verdict.retry_after == 1.0
    outcomes = pipe.apply(batch, verdict)
    assert isinstance(outcomes[0][1], Receipt) and outcomes[0][1].leaf_hash == LEAF
    rejected = outcomes[1][1]
    assert isinstance(rejected, Rejected) and rejected.parameter == "entity_id" and rejected.entry["entity_id"] == "f-3"
    # What is left is retried with the very same body under the very same key...
    assert batch.pending == {1} and batch.key == key and batch.request_body() == body
    # ...and the sealed entry goes alone, under a new key, before anything else.
    again = pipe.take(0.0, force=False)
    assert again is not None and again.key != key and again.items == [batch.items[2]]
    assert json.loads(again.request_body()) == [json.loads(batch.items[2].payload)]
    assert pipe.unsettled == 2


def test_a_compact_replay_still_settles_each_entry() -> None:
    pipe = new_pipe()
    batch = batch_of(pipe, 2)
    results = [{"index": i, "status": 201, "entry": {"id": entry_json(i)["id"]}} for i in range(2)]
    body = json.dumps({"results": results, "stored": 2, "rejected": 0}).encode()
    verdict = judge(batch, 201, httpx.Headers({"idempotent-replayed": "true"}), body)
    receipts = [r for _, r in verdict.stored]
    assert [r.id for r in receipts] == [entry_json(0)["id"], entry_json(1)["id"]]
    assert all(r.replayed and r.timestamp is None and r.leaf_hash is None for r in receipts)


def test_whole_request_answers() -> None:
    pipe = new_pipe()
    batch = batch_of(pipe, 4)

    def error(status: int, code: str, retry_after: str | None = None) -> Any:
        body = {"error": error_json(code)}
        validate(body, component("Error"))
        headers = httpx.Headers({"retry-after": retry_after} if retry_after else {})
        return judge(batch, status, headers, json.dumps(body).encode())

    assert error(422, "idempotency_key_reused").requeue == [0, 1, 2, 3]
    split = error(413, "payload_too_large")
    assert split.requeue == [0, 1, 2, 3] and split.split
    busy = error(409, "idempotency_in_progress", "1")
    assert busy.retry and busy.retry_after == 1.0 and not busy.requeue
    assert error(409, "period_sealed").requeue == [0, 1, 2, 3]
    throttled = error(429, "throttled", "2")
    assert throttled.retry and throttled.retry_after == 2.0 and throttled.limited is None
    assert error(500, "internal_error").limited is not None
    assert error(401, "unauthenticated").auth is not None
    assert judge(batch, 403, httpx.Headers(), b'{"message":"Forbidden"}').auth is not None
    assert len(error(400, "invalid_entry").rejected) == 4
    disabled = json.dumps({"status": "disabled", "message": "off"}).encode()
    validate(json.loads(disabled), component("Disabled"))
    assert {e.code for _, e in judge(batch, 202, httpx.Headers(), disabled).rejected} == {"disabled"}
    cut = judge(batch, 201, httpx.Headers(), b'{"results": [')
    assert cut.retry and not cut.stored


def test_a_413_splits_the_batch_in_two_new_ones() -> None:
    pipe = new_pipe()
    batch = batch_of(pipe, 5)
    pipe.apply(batch, judge(batch, 413, httpx.Headers(), json.dumps({"error": error_json("payload_too_large")}).encode()))
    first, second = pipe.take(0.0, False), pipe.take(0.0, False)
    assert first is not None and second is not None
    assert [len(first.items), len(second.items)] == [2, 3] and first.key != second.key != batch.key


def test_batches_close_at_the_entry_count_the_byte_size_or_the_linger() -> None:
    pipe = new_pipe(max_batch=3, linger=1.0)
    for i in range(7):
        pipe.add(Item(encode_entry("VIEW", "FILE", f"v-{i}", None, None, None), None, None), 10.0)
    assert [len(b.items) for b in pipe.ready] == [3, 3]
    assert pipe.take(10.0, False) is not None and pipe.take(10.0, False) is not None
    assert pipe.take(10.5, False) is None and pipe.deadline() == 11.0
    last = pipe.take(11.0, False)
    assert last is not None and len(last.items) == 1

    payload = encode_entry("VIEW", "FILE", "x", None, {"pad": "y" * 400}, None)
    pipe = new_pipe(max_bytes=2 + 2 * len(payload) + 1)
    for _ in range(5):
        pipe.add(Item(payload, None, None), 0.0)
    sizes = [len(b.request_body()) for b in pipe.ready]
    assert [len(b.items) for b in pipe.ready] == [2, 2] and max(sizes) <= 2 + 2 * len(payload) + 1


def test_drop_oldest_takes_an_unsent_entry_and_flush_tracks_requeued_ones() -> None:
    pipe = new_pipe(max_batch=2)
    sent = batch_of(pipe, 2)  # in flight: cannot be dropped
    for i in range(3):
        pipe.add(Item(encode_entry("VIEW", "FILE", f"q-{i}", None, None, None), None, None), 0.0)
    dropped = pipe.drop_oldest()
    assert dropped is not None and json.loads(dropped.payload)["entity_id"] == "q-0"
    assert pipe.unsettled == 4
    target = pipe.seq
    results = [
        {"index": 0, "status": 201, "entry": entry_json(0)},
        {"index": 1, "status": 409, "error": error_json("period_sealed")},
    ]
    pipe.apply(sent, judge(sent, 207, httpx.Headers(), answer(results)))
    assert not pipe.settled_through(target)  # the re-sent entry is still owed


def test_a_requeue_is_recorded_in_the_spool_so_a_crash_sends_nothing_twice(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    pipe = new_pipe(spool=spool)
    batch = batch_of(pipe, 3)
    results = [
        {"index": 0, "status": 201, "entry": entry_json(0)},
        {"index": 1, "status": 409, "error": error_json("period_sealed")},
        {"index": 2, "status": 503, "error": error_json("unavailable")},
    ]
    pipe.apply(batch, judge(batch, 207, httpx.Headers(), answer(results)))
    spool.close()  # the application dies here
    again = Spool(tmp_path)
    recovered = {b.key: b for b in again.recover()}
    assert recovered[batch.key].moved == {1}  # resent from the old batch: answered, not requeued twice
    [moved] = [b for k, b in recovered.items() if k != batch.key]
    assert moved.payloads == [batch.items[1].payload]
    restarted = new_pipe(spool=again)
    assert restarted.load(list(recovered.values()), 0.0) == 3  # 0 and 2 of the old batch, and the moved one
    again.close()


def test_backoff_is_full_jitter_and_honours_retry_after() -> None:
    backoff = Backoff(base=0.1, cap=2.0)
    delays = [backoff.delay(3) for _ in range(500)]
    assert 0 <= min(delays) and max(delays) <= 0.8 and max(delays) > 0.5
    assert all(backoff.delay(0, retry_after=1.5) >= 1.5 for _ in range(50))
    assert all(backoff.delay(50) <= 2.0 for _ in range(50))


def test_a_refused_credential_keeps_the_batch_retries_it_at_most_60_s_apart_and_never_gives_up() -> None:
    pipe = new_pipe()
    batch = batch_of(pipe, 3)
    refused = judge(batch, 403, httpx.Headers(), b'{"message":"Forbidden"}')
    # Without a token provider: no refresh, the batch waits; never more than 60 s, whatever the backoff.
    delivery = Delivery(pipe, batch, Credentials("alk_x", None, None), 2, Backoff(base=100.0, cap=3600.0))
    for _ in range(20):
        assert delivery.apply(refused, 0) == ([], False)
        assert delivery.delay(refused) <= AUTH_RETRY_CAP == 60.0
    assert batch.pending == {0, 1, 2} and pipe.unsettled == 3 and pipe.refused is refused.auth
    # With one: each refusal asks it once (send again at once), the next one waits.
    tokens = Credentials(None, None, lambda: "t")
    delivery = Delivery(pipe, batch, tokens, 2, Backoff())
    assert [delivery.apply(refused, tokens.generation)[1] for _ in range(4)] == [True, False, True, False]
    assert batch.pending == {0, 1, 2}
    # The service takes the credential again: the batch's entries are stored.
    stored = judge(batch, 201, httpx.Headers(), answer([{"index": i, "status": 201, "entry": entry_json(i)} for i in range(3)]))
    outcomes, again = delivery.apply(stored, tokens.generation)
    assert len(outcomes) == 3 and not again and pipe.refused is None and pipe.unsettled == 0


def test_an_item_answered_500_counts_towards_max_attempts_and_503_does_not() -> None:
    pipe = new_pipe()
    batch = batch_of(pipe, 3)
    results = [
        {"index": 0, "status": 201, "entry": entry_json(0)},
        {"index": 1, "status": 500, "error": error_json("internal_error")},
        {"index": 2, "status": 503, "error": error_json("unavailable")},
    ]
    verdict = judge(batch, 207, httpx.Headers(), answer(results))
    assert verdict.retry and verdict.limited is not None and verdict.limited.status == 500
    outcomes = pipe.apply(batch, verdict) + pipe.give_up(batch, verdict.limited)
    assert [type(o).__name__ for _, o in outcomes] == ["Receipt", "Rejected", "Rejected"]
    only_503 = [results[2]]
    batch = batch_of(new_pipe(), 1)
    only_503[0]["index"] = 0
    assert judge(batch, 207, httpx.Headers(), answer(only_503)).limited is None
