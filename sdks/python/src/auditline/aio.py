"""``AsyncAuditClient``: the asyncio client. Same calls as :class:`~auditline.AuditClient`."""

from __future__ import annotations

import asyncio
import datetime as _dt
import logging
import os
import time
from typing import Any, AsyncIterator, Callable, Generator, Mapping

import httpx

from . import _calls as calls
from ._base import LogMethods, ResultCallback, Settings, feed_backoff, make_settings
from ._common import (
    MAX_BATCH,
    MAX_BODY_BYTES,
    ActionLike,
    Credentials,
    EntityTypeLike,
    OnFull,
    TokenProvider,
    encode_entry,
    websocket_url,
)
from ._feed import ErasureListener, ListenerRecord, Subscription, listener_feed, split_listeners, subscribe
from ._http import AsyncHttp
from ._pipeline import Batch, Delivery, Item, Pipeline, dropped, settle, verdict_of
from ._spool import Spool
from ._types import AuditLogEntry, EntityType, ExportResult, Health, Page, Receipt, Stats
from .errors import AuditlineError, QueueFull

log = logging.getLogger("auditline")


class LogHandle:
    """What ``AsyncAuditClient.log_*`` return: await it for the :class:`Receipt` (or the
    :class:`~auditline.errors.Rejected` it raises). Never awaiting it is fine: nothing is
    reported as "never retrieved"; rejections are logged (or given to ``on_rejected``)."""

    __slots__ = ("_done", "_result", "_exception", "_waiters", "_callbacks")

    def __init__(self) -> None:
        self._done = False
        self._result: Receipt | None = None
        self._exception: BaseException | None = None
        self._waiters: list[asyncio.Future[None]] = []
        self._callbacks: list[Callable[[LogHandle], Any]] = []

    def done(self) -> bool:
        return self._done

    def result(self) -> Receipt:
        if not self._done:
            raise asyncio.InvalidStateError("the entry is not settled yet")
        if self._exception is not None:
            raise self._exception
        assert self._result is not None
        return self._result

    def exception(self) -> BaseException | None:
        if not self._done:
            raise asyncio.InvalidStateError("the entry is not settled yet")
        return self._exception

    def add_done_callback(self, fn: Callable[[LogHandle], Any]) -> None:
        if self._done:
            fn(self)
        else:
            self._callbacks.append(fn)

    def set_result(self, result: Receipt, /) -> None:
        self._settle(result, None)

    def set_exception(self, exception: BaseException, /) -> None:
        self._settle(None, exception)

    def _settle(self, result: Receipt | None, exception: BaseException | None) -> None:
        if self._done:
            return
        self._done = True
        self._result = result
        self._exception = exception
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()
        for fn in self._callbacks:
            try:
                fn(self)
            except Exception:
                log.exception("auditline: a done callback raised")
        self._callbacks.clear()

    def __await__(self) -> Generator[Any, None, Receipt]:
        if not self._done:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            yield from waiter.__await__()
        return self.result()

    def __repr__(self) -> str:
        state = "pending" if not self._done else ("failed" if self._exception else "stored")
        return f"<LogHandle {state}>"


class AsyncAuditClient(LogMethods[LogHandle]):
    """The asyncio client. Construct it anywhere; use it from one event loop.

    ``log_*`` are plain (non-async) methods: they queue the entry and return a :class:`LogHandle`
    to await for the receipt, if you wish. A task of the loop sends batches. ``on_full`` is
    ``raise`` by default here: an event loop cannot block; ``block`` is refused. ``flush`` and
    ``close`` are coroutines; prefer ``async with``. There is no flush at interpreter exit (the
    loop is gone by then): close the client before the loop ends.
    """

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        token: str | None = None,
        token_provider: TokenProvider | None = None,
        max_batch: int = MAX_BATCH,
        max_batch_bytes: int = MAX_BODY_BYTES,
        linger: float = 1.0,
        max_queue: int = 10_000,
        on_full: OnFull = "raise",
        spool_dir: str | os.PathLike[str] | None = None,
        spool_fsync: bool = True,
        max_in_flight: int = 1,
        max_attempts: int = 8,
        backoff_base: float = 0.2,
        backoff_max: float = 30.0,
        timeout: float | httpx.Timeout = 30.0,
        read_retries: int = 3,
        on_rejected: Callable[[AuditlineError], Any] | None = None,
        listener_lookback: float = 30.0,
        listener_resync: float | None = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if on_full == "block":
            raise ValueError("AsyncAuditClient cannot block its event loop: use on_full='raise' or 'drop_oldest'")
        self.url = url.rstrip("/")
        self.settings: Settings = make_settings(
            max_batch=max_batch,
            max_batch_bytes=max_batch_bytes,
            linger=linger,
            max_queue=max_queue,
            on_full=on_full,
            block_timeout=None,
            max_in_flight=max_in_flight,
            max_attempts=max_attempts,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            spool_dir=spool_dir,
            spool_fsync=spool_fsync,
        )
        self._credentials = Credentials(api_key, token, token_provider)
        self._http = AsyncHttp(
            self.url,
            self._credentials,
            timeout=timeout,
            read_retries=read_retries,
            backoff=self.settings.backoff,
            transport=transport,
        )
        self._on_rejected = on_rejected
        self._lookback = listener_lookback
        self._resync = listener_resync
        self._spool = Spool(spool_dir, sync=spool_fsync) if spool_dir is not None else None
        s = self.settings
        self._pipe = Pipeline(
            max_batch=s.max_batch, max_bytes=s.max_batch_bytes, linger=s.linger, max_queue=s.max_queue, spool=self._spool
        )
        #: Entries found in the spool at start (left by an earlier client), queued first.
        self.recovered = 0
        if self._spool is not None:
            self.recovered = self._pipe.load(self._spool.recover(), time.monotonic())
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._changed: asyncio.Event | None = None
        self._stopping: asyncio.Event | None = None
        self._senders: list[asyncio.Task[None]] = []
        self._closing = False
        self._abandoned = False
        self._closed = False
        self._listeners: list[ListenerRecord] = []

    # -- the loop ------------------------------------------------------------------------------

    def _attach(self) -> asyncio.AbstractEventLoop:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "AsyncAuditClient is used from its event loop; from threads, use AuditClient"
            ) from None
        if self._loop is None:
            self._loop = loop
            self._wake = asyncio.Event()
            self._changed = asyncio.Event()
            self._stopping = asyncio.Event()
        elif self._loop is not loop:
            raise RuntimeError("AsyncAuditClient is bound to the event loop it was first used in")
        if not self._senders and not self._closing:
            for n in range(self.settings.max_in_flight):
                self._senders.append(loop.create_task(self._send_loop(), name=f"auditline-sender-{n}"))
        return loop

    async def __aenter__(self) -> AsyncAuditClient:
        self._attach()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- writing -------------------------------------------------------------------------------

    def log(
        self,
        action: ActionLike,
        entity_type: EntityTypeLike,
        entity_id: str,
        *,
        project_id: str | None = None,
        changes: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        on_result: ResultCallback | None = None,
    ) -> LogHandle:
        """Queues one entry; returns at once. Call it from the client's event loop."""
        payload = encode_entry(action, entity_type, entity_id, project_id, changes, metadata)
        if self._closing:
            raise AuditlineError("the client is closed")
        if self._wake is None or not self._senders:
            self._attach()
        handle = LogHandle()
        item = Item(payload, handle, on_result)
        pipe = self._pipe
        made_room: Item | None = None
        if pipe.unsettled >= pipe.max_queue:
            if self.settings.on_full == "drop_oldest":
                made_room = pipe.drop_oldest()
            if made_room is None:
                raise QueueFull(f"the queue holds {pipe.max_queue} unsettled entries (max_queue)")
        if pipe.add(item, time.monotonic()):
            assert self._wake is not None
            self._wake.set()
        if made_room is not None:
            settle([dropped(made_room)], self._on_rejected)
        return handle

    async def _send_loop(self) -> None:
        pipe = self._pipe
        assert self._wake is not None and self._stopping is not None
        wake = self._wake
        while not self._stopping.is_set():
            now = time.monotonic()
            batch = pipe.take(now, force=pipe.flushing > 0 or self._closing)
            if batch is None:
                wake.clear()
                deadline = pipe.deadline()
                try:
                    await asyncio.wait_for(wake.wait(), None if deadline is None else max(0.0, deadline - now))
                except asyncio.TimeoutError:
                    pass
                continue
            try:
                await self._deliver(batch)
            except asyncio.CancelledError:
                if not self._abandoned:
                    pipe.release(batch)
                raise
            except Exception:
                log.exception("auditline: unexpected error while sending a batch")
                pipe.release(batch)
                await asyncio.sleep(1.0)

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
        if self._wake is not None and self._pipe.ready:
            self._wake.set()  # entries re-sent under a new key: a batch of their own is ready

    async def _deliver(self, batch: Batch) -> None:
        pipe = self._pipe
        assert self._stopping is not None
        delivery = Delivery(pipe, batch, self._credentials, self.settings.max_attempts, self.settings.backoff)
        while True:
            generation = -1
            answer: httpx.Response | BaseException
            try:
                answer, generation = await self._http.send_once(delivery.request)
            except (httpx.TransportError, AuditlineError) as e:
                answer = e
            verdict = verdict_of(batch, answer)
            if self._abandoned:
                return
            outcomes, again = delivery.apply(verdict, generation)
            settle(outcomes, self._on_rejected)
            self._notify()
            if not batch.pending:
                return
            if again:
                continue
            try:
                await asyncio.wait_for(self._stopping.wait(), delivery.delay(verdict))
            except asyncio.TimeoutError:
                continue
            pipe.release(batch)
            return

    async def flush(self, timeout: float | None = None) -> bool:
        """Sends what is queued now and waits until each of those entries is settled. ``True``
        when all were; ``False`` if ``timeout`` seconds passed first."""
        self._attach()
        pipe = self._pipe
        target = pipe.seq
        if pipe.settled_through(target):
            return True
        assert self._wake is not None and self._changed is not None
        changed = self._changed
        deadline = None if timeout is None else time.monotonic() + timeout
        pipe.flushing += 1
        self._wake.set()
        try:
            while not pipe.settled_through(target):
                changed.clear()
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                try:
                    await asyncio.wait_for(changed.wait(), remaining)
                except asyncio.TimeoutError:
                    return pipe.settled_through(target)
            return True
        finally:
            pipe.flushing -= 1

    @property
    def queued(self) -> int:
        """Entries logged and not yet settled (spooled ones from an earlier client included)."""
        return self._pipe.unsettled

    async def close(self, timeout: float | None = 10.0) -> bool:
        """Flushes (up to ``timeout`` seconds), stops sending and listening, closes connections.
        Entries still unsettled fail with :class:`~auditline.errors.NotDelivered` (and stay in the
        spool, if any; without one, entries held back by a refused credential fail with its
        :class:`~auditline.errors.AuthError`). ``True`` if everything was settled."""
        if self._closed:
            return True
        flushed = True
        if self._pipe.unsettled:
            flushed = await self.flush(timeout)
        self._closing = True
        if self._stopping is not None:
            self._stopping.set()
        if self._wake is not None:
            self._wake.set()
        if self._senders:
            done, pending = await asyncio.wait(self._senders, timeout=5.0)
            self._abandoned = True
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        self._abandoned = True
        outcomes = self._pipe.abandon()
        settle(outcomes, self._on_rejected)
        for fn, *_ in list(self._listeners):
            await self.remove_listener(fn)
        await self._http.aclose()
        if self._spool is not None:
            self._spool.close()
        self._closed = True
        return flushed and not outcomes

    # -- reading -------------------------------------------------------------------------------

    def get_logs(
        self,
        *,
        action: ActionLike | None = None,
        entity_type: EntityType | str | None = None,
        user_id: str | None = None,
        start_date: _dt.datetime | _dt.date | str | None = None,
        end_date: _dt.datetime | _dt.date | str | None = None,
        offset: int | None = None,
        limit: int | None = None,
        page_size: int = 500,
    ) -> AsyncIterator[AuditLogEntry]:
        """``async for entry in client.get_logs(...)``: every page, lazily, newest first."""
        return self._entries(calls.logs(calls.LOGS, action, entity_type, user_id, start_date, end_date, offset, limit, page_size))

    def get_logs_by_entity(
        self,
        entity_id: str,
        *,
        action: ActionLike | None = None,
        entity_type: EntityType | str | None = None,
        user_id: str | None = None,
        start_date: _dt.datetime | _dt.date | str | None = None,
        end_date: _dt.datetime | _dt.date | str | None = None,
        offset: int | None = None,
        limit: int | None = None,
        page_size: int = 500,
    ) -> AsyncIterator[AuditLogEntry]:
        """One entity's entries, newest first (lazily, every page)."""
        path = calls.entity_path(entity_id)
        return self._entries(calls.logs(path, action, entity_type, user_id, start_date, end_date, offset, limit, page_size))

    def get_logs_by_project(
        self,
        project_id: str,
        *,
        action: ActionLike | None = None,
        entity_type: EntityType | str | None = None,
        user_id: str | None = None,
        start_date: _dt.datetime | _dt.date | str | None = None,
        end_date: _dt.datetime | _dt.date | str | None = None,
        offset: int | None = None,
        limit: int | None = None,
        page_size: int = 500,
    ) -> AsyncIterator[AuditLogEntry]:
        """One project's entries, newest first (lazily, every page)."""
        path = calls.project_path(project_id)
        return self._entries(calls.logs(path, action, entity_type, user_id, start_date, end_date, offset, limit, page_size))

    async def get_page(
        self,
        *,
        entity_id: str | None = None,
        project_id: str | None = None,
        action: ActionLike | None = None,
        entity_type: EntityType | str | None = None,
        user_id: str | None = None,
        start_date: _dt.datetime | _dt.date | str | None = None,
        end_date: _dt.datetime | _dt.date | str | None = None,
        offset: int | None = None,
        limit: int | None = None,
        next_token: str | None = None,
    ) -> Page:
        """One page, as the API answers it (for callers that keep ``next_token`` themselves)."""
        params = calls.filters(action, entity_type, user_id, start_date, end_date, offset)
        request = calls.page(calls.list_path(entity_id, project_id), params, limit, next_token)
        return calls.parse_page(await self._http.send(request))

    async def _entries(self, pager: calls.Pager) -> AsyncIterator[AuditLogEntry]:
        while (request := pager.next()) is not None:
            for entry in pager.take(calls.parse_page(await self._http.send(request))):
                yield entry

    async def get_log(self, entry_id: str) -> AuditLogEntry:
        """One entry by id; :class:`~auditline.errors.NotFound` if there is none (for you)."""
        return calls.parse_entry(await self._http.send(calls.entry(entry_id)))

    async def get_stats(
        self,
        *,
        start_date: _dt.datetime | _dt.date | str | None = None,
        end_date: _dt.datetime | _dt.date | str | None = None,
        bucket: str | None = None,
    ) -> Stats:
        """Totals by action and entity type over whole UTC hours; ``bucket`` (``hour``/``day``)
        adds a series."""
        return calls.parse_stats(await self._http.send(calls.stats(start_date, end_date, bucket)))

    async def get_health(self) -> Health:
        """``GET /audit/health`` (a degraded service's 503 is returned, not raised)."""
        return calls.parse_health(await self._http.send(calls.health()))

    async def export_pages(
        self,
        format: str = "jsonl",
        *,
        action: ActionLike | None = None,
        entity_type: EntityType | str | None = None,
        user_id: str | None = None,
        entity_id: str | None = None,
        project_id: str | None = None,
        start_date: _dt.datetime | _dt.date | str | None = None,
        end_date: _dt.datetime | _dt.date | str | None = None,
    ) -> AsyncIterator[tuple[bytes, int]]:
        """The export's pages, lazily: each page's bytes and its entry count (``x-entry-count``)."""
        pager = calls.export(format, action, entity_type, user_id, entity_id, project_id, start_date, end_date)
        while (request := pager.next()) is not None:
            yield pager.take(await self._http.send(request))

    async def export(
        self,
        format: str = "jsonl",
        path: str | os.PathLike[str] | None = None,
        *,
        action: ActionLike | None = None,
        entity_type: EntityType | str | None = None,
        user_id: str | None = None,
        entity_id: str | None = None,
        project_id: str | None = None,
        start_date: _dt.datetime | _dt.date | str | None = None,
        end_date: _dt.datetime | _dt.date | str | None = None,
    ) -> ExportResult:
        """Writes the whole export to ``path`` (via ``<path>.part``), as ``AuditClient.export``."""
        pager = calls.export(format, action, entity_type, user_id, entity_id, project_id, start_date, end_date)
        with calls.ExportFile(path, format) as out:
            while (request := pager.next()) is not None:
                out.write(pager.take(await self._http.send(request)))
        return out.result

    # -- live feed -----------------------------------------------------------------------------

    async def add_listener(
        self,
        fn: Callable[[AuditLogEntry], Any],
        *,
        project_id: str | None = None,
        entity_type: EntityType | str | None = None,
        action: ActionLike | None = None,
        on_erasure: ErasureListener | None = None,
        after_id: str | None = None,
        wait: float | None = 10.0,
    ) -> Subscription:
        """Calls ``fn(entry)`` (a function or a coroutine function) for each new matching entry,
        each once and in id order across reconnections. Returns once connected (up to ``wait``
        seconds; it keeps trying after that)."""
        loop = self._attach()
        if self._closing:
            raise AuditlineError("the client is closed")
        subscription = subscribe(fn, project_id, entity_type, action)
        feed = listener_feed(
            subscription, on_erasure, after_id, ws_url=websocket_url(self.url), http=self._http,
            credentials=self._credentials, lookback=self._lookback, resync_interval=self._resync,
            backoff=feed_backoff(self.settings),
        )
        task = loop.create_task(feed.run(), name="auditline-listener")
        self._listeners.append((fn, subscription, feed, task))
        if wait is not None and wait > 0:
            try:
                await asyncio.wait_for(feed.ready.wait(), wait)
            except asyncio.TimeoutError:
                log.warning("auditline: the listener is not connected yet (%s); it keeps trying", subscription.last_error)
        return subscription

    async def remove_listener(self, fn: Callable[..., Any] | Subscription) -> bool:
        """Stops every listener added with ``fn`` (or that :class:`Subscription`)."""
        self._listeners, removed = split_listeners(self._listeners, fn)
        for _, _, feed, task in removed:
            if task is asyncio.current_task():  # from the listener's own callback
                feed.stop()  # no more deliveries; the feed ends once the callback returns
                asyncio.get_running_loop().create_task(feed.close())
                continue
            await feed.close()
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        return bool(removed)
