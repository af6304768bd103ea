"""The write path without I/O: queueing, batching, and what each answer means for each entry.

Both clients drive one :class:`Pipeline` — the sync one from threads under a lock, the async one
from its event loop — and send what it hands them. Batches are formed as entries arrive: the
*open* batch fills until it has ``max_batch`` entries or the next would take its body over
``max_bytes``; it is then *ready*, as it is when its first entry has waited ``linger`` seconds or
someone flushes. Each batch has its own ``Idempotency-Key`` (a uuid4) from the start and its body
is fixed when first sent, so every retry sends the same bytes under the same key.
"""

from __future__ import annotations

import copy
import json
import logging
import uuid
from concurrent.futures import InvalidStateError
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol, Tuple, Union

import httpx

from . import _calls as calls
from ._common import Backoff, Credentials, batch_body, log_entry_repr
from ._spool import Spool, SpooledBatch, SpoolWriter
from ._types import Receipt
from .errors import (
    ApiError,
    AuditlineError,
    Dropped,
    NotDelivered,
    Rejected,
    SpoolError,
    error_of,
    error_of_item,
    retry_after_of,
)

log = logging.getLogger("auditline")

#: Longest wait between two attempts at a batch whose credential the service refuses (seconds).
AUTH_RETRY_CAP = 60.0


class Handle(Protocol):
    def set_result(self, result: Receipt, /) -> None: ...

    def set_exception(self, exception: BaseException, /) -> None: ...


Callback = Callable[[Any], None]


class Item:
    """One logged entry: its JSON, and who to tell."""

    __slots__ = ("payload", "handle", "callback", "seq", "settled")

    def __init__(self, payload: bytes, handle: Handle | None, callback: Callback | None) -> None:
        self.payload = payload
        self.handle = handle
        self.callback = callback
        self.seq = 0
        self.settled = False

    def entry(self) -> dict[str, Any]:
        return log_entry_repr(self.payload)


class Batch:
    """Entries sent together under one key."""

    __slots__ = ("key", "items", "size", "created", "body", "pending", "writer", "attempts")

    def __init__(self, key: str, created: float) -> None:
        self.key = key
        self.items: list[Item] = []
        self.size = 2  # "[" and "]"
        self.created = created
        self.body: bytes | None = None
        self.pending: set[int] = set()
        self.writer: SpoolWriter | None = None
        self.attempts = 0

    def request_body(self) -> bytes:
        if self.body is None:
            self.body = batch_body([i.payload for i in self.items])
        return self.body

    def fits(self, payload: bytes, max_batch: int, max_bytes: int) -> bool:
        return len(self.items) < max_batch and self.size + len(payload) + (1 if self.items else 0) <= max_bytes


@dataclass
class Verdict:
    """What one answer (or failure) means for a batch's pending entries."""

    stored: list[tuple[int, Receipt]] = field(default_factory=list)
    rejected: list[tuple[int, ApiError]] = field(default_factory=list)
    #: Send these again as a new batch under a new key (period_sealed, a reused key, 413).
    requeue: list[int] = field(default_factory=list)
    #: With ``requeue``: in two halves (the body was too large for this server).
    split: bool = False
    #: Entries remain that a retry of the same body under the same key may store.
    retry: bool = False
    retry_after: float | None = None
    #: A failure that does not cure itself for sure (500, other statuses): bounded retries.
    limited: ApiError | None = None
    #: 401/403: refresh the token if we can (once, then send at once); still refused, the
    #: entries stay queued and the batch is sent again after a backoff of at most AUTH_RETRY_CAP.
    auth: ApiError | None = None
    #: No (whole) answer came: it says nothing about the credential.
    unanswered: bool = False
    #: Why a retry is needed, for the log.
    reason: str = ""


def judge(batch: Batch, status: int, headers: Mapping[str, str], body: bytes) -> Verdict:
    """The verdict for an HTTP answer to ``batch``."""
    pending = batch.pending
    replayed = headers.get("idempotent-replayed", "").lower() == "true"
    if status in (200, 201, 207):
        try:
            data = json.loads(body)
            results = data["results"]
            if not isinstance(results, list):
                raise TypeError("results is not a list")
        except (ValueError, KeyError, TypeError) as e:
            return Verdict(retry=True, reason=f"unreadable {status} answer ({e})")
        verdict = Verdict()
        for i, result in enumerate(results):
            if not isinstance(result, dict):
                continue
            position = result.get("index", i)
            if not isinstance(position, int) or position not in pending:
                continue
            item_status = result.get("status", 0)
            entry = result.get("entry")
            error = result.get("error")
            if isinstance(entry, dict) and "id" in entry and item_status in (200, 201):
                verdict.stored.append((position, Receipt.from_json(entry, replayed=replayed)))
            elif item_status in (200, 201):
                verdict.retry = True
                verdict.limited = ApiError(item_status, "malformed_answer", "a stored entry came back without its id")
                verdict.reason = "an answer without an entry"
            elif item_status == 202:
                verdict.rejected.append(
                    (position, ApiError(202, "disabled", "audit logging is disabled on the server; nothing was stored"))
                )
            elif isinstance(error, dict) and error.get("code") == "period_sealed":
                verdict.requeue.append(position)
            elif item_status in (429, 502, 503, 504):
                verdict.retry = True
                verdict.reason = f"entries answered {item_status}"
            elif item_status >= 500:
                verdict.retry = True
                verdict.limited = error_of_item(item_status, error, None)
                verdict.reason = f"entries answered {item_status}"
            else:
                verdict.rejected.append((position, error_of_item(item_status, error, None)))
        answered = {r.get("index", i) for i, r in enumerate(results) if isinstance(r, dict)}
        if any(p not in answered for p in pending):
            verdict.retry = True
            verdict.reason = "the answer left entries out"
        if verdict.retry:
            verdict.retry_after = retry_after_of(headers)
        return verdict
    if status == 202:
        disabled = ApiError(202, "disabled", "audit logging is disabled on the server; nothing was stored")
        return Verdict(rejected=[(p, disabled) for p in sorted(pending)])
    error = error_of(status, body, headers)
    if status in (401, 403):
        return Verdict(auth=error)
    if status == 409 and error.code == "period_sealed":
        return Verdict(requeue=sorted(pending))
    if status == 409 and error.code == "idempotency_in_progress":
        return Verdict(retry=True, retry_after=error.retry_after, reason="the first attempt is still in progress")
    if status == 422:
        # The key's record belongs to another body: this body was never processed under it.
        return Verdict(requeue=sorted(pending))
    if status == 413 and len(pending) > 1:
        return Verdict(requeue=sorted(pending), split=True)
    if status in (429, 502, 503, 504):
        return Verdict(retry=True, retry_after=error.retry_after, reason=f"{status} {error.code}")
    if status >= 500:
        return Verdict(retry=True, retry_after=error.retry_after, limited=error, reason=f"{status} {error.code}")
    return Verdict(rejected=[(p, error) for p in sorted(pending)])


def judge_failure(exc: BaseException) -> Verdict:
    """A request that got no (whole) answer: connection refused or reset, timeout, cut response."""
    return Verdict(retry=True, unanswered=True, reason=f"{type(exc).__name__}: {exc}")


Outcome = Tuple[Item, Union[Receipt, AuditlineError]]


class Delivery:
    """One batch's attempts, for both clients: what each verdict does to the pipeline (settled
    entries, a token refresh, a bounded failure) and how long to wait before the next attempt.
    The clients send, wait and settle the outcomes; the sync one calls :meth:`apply` under its lock."""

    def __init__(self, pipe: Pipeline, batch: Batch, credentials: Credentials, max_attempts: int, backoff: Backoff) -> None:
        self.pipe = pipe
        self.batch = batch
        self.credentials = credentials
        self.max_attempts = max_attempts
        self.backoff = backoff
        #: The same body under the same key, every attempt.
        self.request = calls.batch(batch.key, batch.request_body())
        self.attempt = 0
        self.hard_failures = 0
        self.refreshed = False

    def apply(self, verdict: Verdict, generation: int) -> tuple[list[Outcome], bool]:
        """The outcomes ``verdict`` settles, and whether to send again at once (a fresh token)."""
        pipe, batch = self.pipe, self.batch
        if verdict.auth is not None:
            if not self.refreshed and self.credentials.invalidate(generation):
                self.refreshed = True
                return [], True
            # Still refused: something operators fix (a rotated key, a token the provider will
            # renew, an authorizer outage). The entries stay queued (and spooled); the next
            # attempt, after the backoff, may refresh the token again.
            self.refreshed = False
            pipe.refused = verdict.auth
            return [], False
        if not verdict.unanswered:
            pipe.refused = None  # the service took the credential
        if verdict.limited is not None and self.hard_failures + 1 >= self.max_attempts:
            outcomes = pipe.apply(batch, verdict)  # what this answer did settle, then the rest fails
            if batch.pending:
                outcomes += pipe.give_up(batch, verdict.limited)
            return outcomes, False
        self.refreshed = False  # a later refusal (an expired token) may refresh again
        return pipe.apply(batch, verdict), False

    def delay(self, verdict: Verdict) -> float:
        """Seconds to wait before sending the batch again (it still has pending entries)."""
        if verdict.limited is not None:
            self.hard_failures += 1
        delay = self.backoff.delay(self.attempt, verdict.retry_after)
        self.attempt += 1
        self.batch.attempts = self.attempt
        if verdict.auth is not None:
            delay = min(delay, AUTH_RETRY_CAP)
            log.warning(
                "auditline: the service refused the credential (%s); %d entries stay queued and are sent again in %.2f s",
                verdict.auth,
                len(self.batch.pending),
                delay,
                extra={"auditline_error": verdict.auth},
            )
            return delay
        log.debug("auditline: batch %s: %s; retrying in %.2f s", self.batch.key, verdict.reason, delay)
        return delay


def verdict_of(batch: Batch, answer: httpx.Response | BaseException) -> Verdict:
    """The verdict for one attempt at ``batch``: its answer, or the exception that stopped it."""
    if isinstance(answer, BaseException):
        return judge_failure(answer)
    return judge(batch, answer.status_code, answer.headers, answer.content)


class Pipeline:
    def __init__(
        self,
        *,
        max_batch: int,
        max_bytes: int,
        linger: float,
        max_queue: int,
        spool: Spool | None,
    ) -> None:
        self.max_batch = max_batch
        self.max_bytes = max_bytes
        self.linger = linger
        self.max_queue = max_queue
        self.spool = spool
        self.open: Batch | None = None
        self.ready: deque[Batch] = deque()
        self.inflight: set[Batch] = set()
        self.unsettled = 0
        self.order: deque[Item] = deque()
        self.seq = 0
        self.flushing = 0
        self.stored_total = 0
        self.rejected_total = 0
        #: The AuthError of the last refused attempt, until the service takes the credential again.
        self.refused: ApiError | None = None

    # -- entries in ----------------------------------------------------------------------------

    def full(self) -> bool:
        return self.unsettled >= self.max_queue

    def add(self, item: Item, now: float) -> bool:
        """Queues an entry (spooled first, if there is a spool). ``True``: wake the sender (a
        batch is ready, or this entry started a new one whose linger must be timed)."""
        batch = self.open
        if batch is None or not batch.fits(item.payload, self.max_batch, self.max_bytes):
            if batch is not None:
                self._close_open()
            batch = self._new_open(now)
        if self.spool is not None:
            assert batch.writer is not None
            try:
                self.spool.append(batch.writer, item.payload)
            except SpoolError:
                if not batch.items:
                    self.spool.discard_open(batch.writer)
                    self.open = None
                elif batch.writer.broken:
                    self._close_open()
                raise
        self.seq += 1
        item.seq = self.seq
        batch.pending.add(len(batch.items))
        batch.size += len(item.payload) + (1 if batch.items else 0)
        batch.items.append(item)
        self.unsettled += 1
        self.order.append(item)
        if len(batch.items) >= self.max_batch:
            self._close_open()
            return True
        return len(batch.items) == 1

    def _new_open(self, now: float) -> Batch:
        batch = Batch(uuid.uuid4().hex, now)
        if self.spool is not None:
            batch.writer = self.spool.open_batch(batch.key)
        self.open = batch
        return batch

    def _close_open(self) -> None:
        batch = self.open
        if batch is None:
            return
        self.open = None
        if not batch.items:
            if batch.writer is not None and self.spool is not None:
                self.spool.discard_open(batch.writer)
            return
        if batch.writer is not None and self.spool is not None:
            try:
                self.spool.seal(batch.writer)
            except SpoolError as e:
                log.error("auditline: %s; the batch is sent from memory", e)
        self.ready.append(batch)

    def drop_oldest(self) -> Item | None:
        """Takes the oldest entry not yet sent out of the queue (policy ``drop_oldest``)."""
        candidates = list(self.ready)
        if self.open is not None:
            candidates.append(self.open)
        for batch in candidates:
            if batch.body is not None or not batch.items:
                continue
            item = batch.items.pop(0)
            batch.pending = set(range(len(batch.items)))
            batch.size = len(batch_body([i.payload for i in batch.items]))
            if not batch.items and batch is not self.open:
                self.ready.remove(batch)
            item.settled = True
            self.unsettled -= 1
            return item
        return None

    def load(self, recovered: list[SpooledBatch], now: float) -> int:
        """Batches an earlier client left in the spool, queued before anything new."""
        count = 0
        for spooled in recovered:
            batch = Batch(spooled.key, now)
            for position, payload in enumerate(spooled.payloads):
                item = Item(payload, None, None)
                batch.items.append(item)
                if position in spooled.moved:
                    item.settled = True
                    continue
                self.seq += 1
                item.seq = self.seq
                batch.pending.add(position)
                self.unsettled += 1
                self.order.append(item)
                count += 1
            batch.size = len(batch.request_body())
            self.ready.append(batch)
        return count

    # -- batches out ---------------------------------------------------------------------------

    def deadline(self) -> float | None:
        """When the open batch must go, if nothing fills it first."""
        if self.open is None or not self.open.items:
            return None
        return self.open.created + self.linger

    def has_work(self, now: float, force: bool) -> bool:
        if self.ready:
            return True
        deadline = self.deadline()
        return deadline is not None and (force or now >= deadline)

    def take(self, now: float, force: bool) -> Batch | None:
        if not self.ready:
            deadline = self.deadline()
            if deadline is None or not (force or now >= deadline):
                return None
            self._close_open()
        if not self.ready:
            return None
        batch = self.ready.popleft()
        batch.request_body()
        self.inflight.add(batch)
        return batch

    # -- answers -------------------------------------------------------------------------------

    def apply(self, batch: Batch, verdict: Verdict) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for position, receipt in verdict.stored:
            if position in batch.pending:
                batch.pending.discard(position)
                outcomes.append((batch.items[position], receipt))
        for position, error in verdict.rejected:
            if position in batch.pending:
                batch.pending.discard(position)
                item = batch.items[position]
                outcomes.append((item, Rejected.of(error, item.entry())))
        requeue = [p for p in verdict.requeue if p in batch.pending]
        if requeue:
            chunks = [requeue]
            if verdict.split and len(requeue) > 1:
                half = len(requeue) // 2
                chunks = [requeue[:half], requeue[half:]]
            moved: list[Batch] = []
            for chunk in chunks:
                again = Batch(uuid.uuid4().hex, batch.created)
                again.items = [batch.items[p] for p in chunk]
                again.pending = set(range(len(chunk)))
                again.size = len(again.request_body())
                again.body = None
                if self.spool is not None:
                    try:
                        self.spool.write_batch(again.key, [i.payload for i in again.items], (batch.key, chunk))
                    except SpoolError as e:
                        log.error("auditline: %s; those entries stay in their batch and are tried again", e)
                        continue
                batch.pending.difference_update(chunk)
                moved.append(again)
            for again in reversed(moved):
                self.ready.appendleft(again)
        self._account(outcomes)
        if not batch.pending:
            self._finish(batch)
        return outcomes

    def give_up(self, batch: Batch, error: ApiError) -> list[Outcome]:
        """Rejects every entry still pending in ``batch`` with ``error``."""
        outcomes: list[Outcome] = []
        for position in sorted(batch.pending):
            item = batch.items[position]
            outcomes.append((item, Rejected.of(error, item.entry())))
        batch.pending.clear()
        self._account(outcomes)
        self._finish(batch)
        return outcomes

    def _account(self, outcomes: list[Outcome]) -> None:
        for item, result in outcomes:
            item.settled = True
            self.unsettled -= 1
            if isinstance(result, Receipt):
                self.stored_total += 1
            else:
                self.rejected_total += 1
        while self.order and self.order[0].settled:
            self.order.popleft()

    def _finish(self, batch: Batch) -> None:
        self.inflight.discard(batch)
        if self.spool is not None:
            self.spool.remove(batch.key)

    def release(self, batch: Batch) -> None:
        """A batch whose sending stopped unfinished (the client is closing): back to the queue."""
        if batch in self.inflight:
            self.inflight.discard(batch)
            self.ready.appendleft(batch)

    def settled_through(self, seq: int) -> bool:
        """Whether every entry up to ``seq`` is settled."""
        while self.order and self.order[0].settled:
            self.order.popleft()
        return not self.order or self.order[0].seq > seq

    def abandon(self) -> list[Outcome]:
        """The client closes with entries unsettled: they fail (and stay in the spool, if any).
        Without a spool, while the service refuses the credential, they fail with the
        :class:`~auditline.errors.AuthError` that last refused it."""
        spooled = self.spool is not None
        if spooled:
            self._close_open()
        message = (
            "the client closed before this entry was sent; it stays in the spool and the next client on it sends it"
            if spooled
            else "the client closed before this entry was sent; it was not stored"
        )
        refused = None if spooled else self.refused
        outcomes: list[Outcome] = []
        for item in self.order:
            if not item.settled:
                item.settled = True
                error: AuditlineError = (
                    NotDelivered(message, spooled=spooled) if refused is None else copy.copy(refused)
                )
                outcomes.append((item, error))
        self.unsettled = 0
        self.order.clear()
        self.open = None
        self.ready.clear()
        self.inflight.clear()
        return outcomes


def dropped(item: Item) -> Outcome:
    return item, Dropped("the queue was full; this entry was dropped to make room (on_full='drop_oldest')")


def settle(
    outcomes: list[Outcome],
    on_rejected: Callable[[AuditlineError], None] | None,
) -> None:
    """Tells each entry's handle and callbacks its outcome (outside any lock)."""
    for item, result in outcomes:
        handle = item.handle
        if isinstance(result, Receipt):
            if handle is not None:
                try:
                    handle.set_result(result)
                except InvalidStateError:
                    pass  # the caller cancelled its future: the entry is stored all the same
        else:
            if handle is not None:
                try:
                    handle.set_exception(result)
                except InvalidStateError:
                    pass
            if on_rejected is not None:
                try:
                    on_rejected(result)
                except Exception:
                    log.exception("auditline: on_rejected raised")
            elif not isinstance(result, NotDelivered) or not result.spooled:
                log.warning("auditline: entry not stored: %s; entry: %s", result, _short(item))
        if item.callback is not None:
            try:
                item.callback(result)
            except Exception:
                log.exception("auditline: an on_result callback raised")


def _short(item: Item) -> str:
    text = item.payload[:300].decode("utf-8", "replace")
    return text + ("…" if len(item.payload) > 300 else "")
