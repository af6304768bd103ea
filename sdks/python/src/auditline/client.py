"""``AuditClient``: the synchronous client. Entries go out from background threads; reads block."""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import datetime as _dt
import logging
import os
import threading
import time
import weakref
from typing import Any, Callable, Coroutine, Iterator, Mapping, TypeVar

import httpx

from . import _calls as calls
from ._base import LogMethods, ResultCallback, Settings, make_settings
from ._base import feed_backoff as _feed_backoff
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
from ._feed import ErasureListener, Feed, ListenerRecord, Subscription, listener_feed, split_listeners, subscribe
from ._http import AsyncHttp, SyncHttp
from ._pipeline import Batch, Delivery, Item, Pipeline, dropped, settle, verdict_of
from ._spool import Spool
from ._types import AuditLogEntry, EntityType, ExportResult, Health, Page, Receipt, Stats
from .errors import AuditlineError, QueueFull, SpoolError

log = logging.getLogger("auditline")

T = TypeVar("T")


class AuditClient(LogMethods["concurrent.futures.Future[Receipt]"]):
    """The synchronous client.

    ``log_*`` queue an entry and return a :class:`concurrent.futures.Future` resolving to its
    :class:`~auditline.Receipt`; background threads send the queue in batches. Reads block and
    return typed results; ``get_logs`` and its kin iterate every page lazily. Listeners run on a
    background thread of their own. Call :meth:`close` (or use ``with``) when done; at interpreter
    exit the client flushes by itself (``flush_at_exit``, up to ``exit_timeout`` seconds).
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
        on_full: OnFull = "block",
        block_timeout: float | None = 30.0,
        spool_dir: str | os.PathLike[str] | None = None,
        spool_fsync: bool = True,
        max_in_flight: int = 1,
        max_attempts: int = 8,
        backoff_base: float = 0.2,
        backoff_max: float = 30.0,
        timeout: float | httpx.Timeout = 30.0,
        read_retries: int = 3,
        on_rejected: Callable[[AuditlineError], Any] | None = None,
        flush_at_exit: bool = True,
        exit_timeout: float = 10.0,
        listener_lookback: float = 30.0,
        listener_resync: float | None = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.settings: Settings = make_settings(
            max_batch=max_batch,
            max_batch_bytes=max_batch_bytes,
            linger=linger,
            max_queue=max_queue,
            on_full=on_full,
            block_timeout=block_timeout,
            max_in_flight=max_in_flight,
            max_attempts=max_attempts,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            spool_dir=spool_dir,
            spool_fsync=spool_fsync,
        )
        self._credentials = Credentials(api_key, token, token_provider)
        self._timeout = timeout
        self._read_retries = read_retries
        self._http = SyncHttp(
            self.url,
            self._credentials,
            timeout=timeout,
            read_retries=read_retries,
            backoff=self.settings.backoff,
            transport=transport,
        )
        self._on_rejected = on_rejected
        self._exit_timeout = exit_timeout
        self._lookback = listener_lookback
        self._resync = listener_resync
        self._spool = Spool(spool_dir, sync=spool_fsync) if spool_dir is not None else None
        self._spool_owner = True
        s = self.settings
        self._pipe = Pipeline(
            max_batch=s.max_batch,
            max_bytes=s.max_batch_bytes,
            linger=s.linger,
            max_queue=s.max_queue,
            spool=self._spool,
        )
        #: Entries found in the spool at start (left by an earlier client), queued first.
        self.recovered = 0
        if self._spool is not None:
            self.recovered = self._pipe.load(self._spool.recover(), time.monotonic())
        self._cv = threading.Condition(threading.Lock())
        self._stop = threading.Event()
        self._closing = False
        self._abandoned = False
        self._closed = False
        self._senders: list[threading.Thread] = []
        self._feeds: _FeedRunner | None = None
        self._listeners: list[ListenerRecord] = []
        self._at_exit_registered = flush_at_exit
        if flush_at_exit:
            atexit.register(self._at_exit)
        _after_fork_in_child(self)
        if self.recovered:
            self._start_senders()

    def _forked(self) -> None:
        """In a child process (``fork``) the threads and connections are gone and the queue is
        the parent's to send: start afresh, empty. A spool stays with the parent."""
        self._cv = threading.Condition(threading.Lock())
        self._stop = threading.Event()
        self._senders = []
        self._feeds = None
        self._listeners = []
        self._http = SyncHttp(
            self.url,
            self._credentials,
            timeout=self._timeout,
            read_retries=self._read_retries,
            backoff=self.settings.backoff,
        )
        s = self.settings
        if self._spool is not None:
            self._spool = None
            self._spool_owner = False
        self._pipe = Pipeline(
            max_batch=s.max_batch, max_bytes=s.max_batch_bytes, linger=s.linger, max_queue=s.max_queue, spool=None
        )

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
    ) -> concurrent.futures.Future[Receipt]:
        """Queues one entry; returns at once. See :class:`LogMethods`."""
        payload = encode_entry(action, entity_type, entity_id, project_id, changes, metadata)
        if not self._spool_owner:
            raise SpoolError("this process was forked from the one that owns the spool: create its own client")
        future: concurrent.futures.Future[Receipt] = concurrent.futures.Future()
        item = Item(payload, future, on_result)
        pipe = self._pipe
        made_room: Item | None = None
        with self._cv:
            if self._closing:
                raise AuditlineError("the client is closed")
            if pipe.unsettled >= pipe.max_queue:
                made_room = self._make_room()
            if not self._senders:
                self._start_senders()
            woke = pipe.add(item, time.monotonic())
            if woke:
                self._cv.notify_all()
        if made_room is not None:
            settle([dropped(made_room)], self._on_rejected)
        if woke and pipe.inflight:
            # A batch just filled while another is out: let the sender threads have the GIL now,
            # not at the next switch interval (5 ms), so a tight logging loop does not starve them.
            time.sleep(0)
        return future

    def _make_room(self) -> Item | None:
        """Called with the lock held and the queue full: applies ``on_full``."""
        policy = self.settings.on_full
        pipe = self._pipe
        if policy == "block":
            if self._senders and threading.current_thread() in self._senders:
                raise QueueFull("the queue is full (log_* called from an on_result callback)")
            pipe.flushing += 1  # a full queue goes out now, without waiting for its linger
            self._cv.notify_all()
            try:
                room = self._cv.wait_for(
                    lambda: pipe.unsettled < pipe.max_queue or self._closing, self.settings.block_timeout
                )
            finally:
                pipe.flushing -= 1
            if room:
                if self._closing:
                    raise AuditlineError("the client is closed")
                return None
            raise QueueFull(
                f"the queue has held {pipe.max_queue} unsettled entries for {self.settings.block_timeout} s "
                "(the service is unreachable or slower than the logging)"
            )
        if policy == "drop_oldest":
            item = pipe.drop_oldest()
            if item is not None:
                return item
        raise QueueFull(f"the queue holds {pipe.max_queue} unsettled entries (max_queue)")

    def _start_senders(self) -> None:
        for n in range(self.settings.max_in_flight - len(self._senders)):
            thread = threading.Thread(target=self._send_loop, name=f"auditline-sender-{n}", daemon=True)
            self._senders.append(thread)
            thread.start()

    def _send_loop(self) -> None:
        pipe = self._pipe
        while True:
            with self._cv:
                while True:
                    if self._stop.is_set():
                        return
                    now = time.monotonic()
                    batch = pipe.take(now, force=pipe.flushing > 0 or self._closing)
                    if batch is not None:
                        break
                    deadline = pipe.deadline()
                    self._cv.wait(None if deadline is None else max(0.0, deadline - now))
            try:
                self._deliver(batch)
            except Exception:  # never let a sender die: the batch goes back to the queue
                log.exception("auditline: unexpected error while sending a batch")
                with self._cv:
                    pipe.release(batch)
                self._stop.wait(1.0)

    def _deliver(self, batch: Batch) -> None:
        pipe = self._pipe
        delivery = Delivery(pipe, batch, self._credentials, self.settings.max_attempts, self.settings.backoff)
        while True:
            generation = -1
            answer: httpx.Response | BaseException
            try:
                answer, generation = self._http.send_once(delivery.request)
            except (httpx.TransportError, AuditlineError) as e:
                answer = e
            verdict = verdict_of(batch, answer)
            with self._cv:
                if self._abandoned:
                    return  # close() gave up on it: its entries were settled there
                outcomes, again = delivery.apply(verdict, generation)
                finished = not batch.pending
                self._cv.notify_all()
            settle(outcomes, self._on_rejected)
            if finished:
                return
            if again:
                continue
            if self._stop.wait(delivery.delay(verdict)):
                with self._cv:
                    pipe.release(batch)
                return

    def flush(self, timeout: float | None = None) -> bool:
        """Sends what is queued now and waits until each of those entries is settled (stored or
        rejected). ``True`` when all were; ``False`` if ``timeout`` seconds passed first."""
        if threading.current_thread() in self._senders:
            raise RuntimeError("flush() cannot be called from an on_result callback")
        pipe = self._pipe
        with self._cv:
            target = pipe.seq
            if pipe.settled_through(target):
                return True
            if not self._senders:
                self._start_senders()
            pipe.flushing += 1
            self._cv.notify_all()
            try:
                return self._cv.wait_for(lambda: pipe.settled_through(target), timeout)
            finally:
                pipe.flushing -= 1

    @property
    def queued(self) -> int:
        """Entries logged and not yet settled (spooled ones from an earlier client included)."""
        return self._pipe.unsettled

    def close(self, timeout: float | None = 10.0) -> bool:
        """Flushes (up to ``timeout`` seconds), stops the senders and the listeners, and closes
        the connections. Entries still unsettled then fail with
        :class:`~auditline.errors.NotDelivered` — and stay in the spool, if there is one, for the
        next client on it; without a spool, entries held back by a refused credential fail with the
        :class:`~auditline.errors.AuthError` that last refused it. ``True`` if everything was settled."""
        if self._closed:
            return True
        flushed = True
        if self._pipe.unsettled:
            flushed = self.flush(timeout)
        with self._cv:
            self._closing = True
            self._stop.set()
            self._cv.notify_all()
        for thread in self._senders:
            thread.join(timeout=5.0)
        with self._cv:
            self._abandoned = True
            outcomes = self._pipe.abandon()
        settle(outcomes, self._on_rejected)
        for _, _, feed, _ in list(self._listeners):
            feed.stop()
        if self._feeds is not None:
            self._feeds.stop()
            self._feeds = None
        self._listeners.clear()
        self._http.close()
        if self._spool is not None:
            self._spool.close()
        if self._at_exit_registered:
            atexit.unregister(self._at_exit)
        self._closed = True
        return flushed and not outcomes

    def _at_exit(self) -> None:
        try:
            self.close(self._exit_timeout)
        except Exception:
            log.exception("auditline: flush at exit failed")

    def __enter__(self) -> AuditClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
    ) -> Iterator[AuditLogEntry]:
        """The tenant's entries, newest first, every page fetched lazily as you iterate.
        ``limit`` caps how many are yielded (all when ``None``); ``page_size`` is the per-request
        ``limit`` (1–1000)."""
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
    ) -> Iterator[AuditLogEntry]:
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
    ) -> Iterator[AuditLogEntry]:
        """One project's entries, newest first (lazily, every page)."""
        path = calls.project_path(project_id)
        return self._entries(calls.logs(path, action, entity_type, user_id, start_date, end_date, offset, limit, page_size))

    def get_page(
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
        return calls.parse_page(self._http.send(calls.page(calls.list_path(entity_id, project_id), params, limit, next_token)))

    def _entries(self, pager: calls.Pager) -> Iterator[AuditLogEntry]:
        def entries() -> Iterator[AuditLogEntry]:
            while (request := pager.next()) is not None:
                yield from pager.take(calls.parse_page(self._http.send(request)))

        return entries()

    def get_log(self, entry_id: str) -> AuditLogEntry:
        """One entry by id; :class:`~auditline.errors.NotFound` if there is none (for you)."""
        return calls.parse_entry(self._http.send(calls.entry(entry_id)))

    def get_stats(
        self,
        *,
        start_date: _dt.datetime | _dt.date | str | None = None,
        end_date: _dt.datetime | _dt.date | str | None = None,
        bucket: str | None = None,
    ) -> Stats:
        """Totals by action and entity type over whole UTC hours; ``bucket`` (``hour``/``day``)
        adds a series."""
        return calls.parse_stats(self._http.send(calls.stats(start_date, end_date, bucket)))

    def get_health(self) -> Health:
        """``GET /audit/health`` (a degraded service's 503 is returned, not raised)."""
        return calls.parse_health(self._http.send(calls.health()))

    def export_pages(
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
    ) -> Iterator[tuple[bytes, int]]:
        """The export's pages, lazily: each page's bytes and its entry count (``x-entry-count``)."""
        pager = calls.export(format, action, entity_type, user_id, entity_id, project_id, start_date, end_date)

        def pages() -> Iterator[tuple[bytes, int]]:
            while (request := pager.next()) is not None:
                yield pager.take(self._http.send(request))

        return pages()

    def export(
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
        """Writes the whole export (every page, following ``x-next-token``) to ``path``: first to
        ``<path>.part``, renamed to ``path`` once complete. The service records the export as a
        VIEW entry."""
        pager = calls.export(format, action, entity_type, user_id, entity_id, project_id, start_date, end_date)
        with calls.ExportFile(path, format) as out:
            while (request := pager.next()) is not None:
                out.write(pager.take(self._http.send(request)))
        return out.result

    # -- live feed -----------------------------------------------------------------------------

    def add_listener(
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
        """Calls ``fn(entry)`` for each new entry matching the filters — each once, in id order,
        across reconnections (see the README, *Live feed*). ``fn`` runs on the client's listener
        thread: keep it short. Returns once connected (up to ``wait`` seconds; it keeps trying in
        the background after that)."""
        subscription = subscribe(fn, project_id, entity_type, action)
        if self._closing:
            raise AuditlineError("the client is closed")
        if self._feeds is not None and threading.current_thread() is self._feeds.thread:
            raise RuntimeError("add_listener() cannot be called from a listener; call it from another thread")
        if self._feeds is None:
            self._feeds = _FeedRunner(
                lambda: AsyncHttp(
                    self.url,
                    self._credentials,
                    timeout=self._timeout,
                    read_retries=self._read_retries,
                    backoff=self.settings.backoff,
                )
            )
        runner = self._feeds

        async def start() -> tuple[Feed, asyncio.Task[None]]:
            feed = self._feed(subscription, on_erasure, after_id, runner.http)
            return feed, asyncio.get_running_loop().create_task(feed.run())

        feed, task = runner.call(start())
        self._listeners.append((fn, subscription, feed, task))
        if wait is not None and wait > 0:

            async def ready() -> bool:
                try:
                    await asyncio.wait_for(feed.ready.wait(), wait)
                    return True
                except asyncio.TimeoutError:
                    return False

            if not runner.call(ready()):
                log.warning("auditline: the listener is not connected yet (%s); it keeps trying", subscription.last_error)
        return subscription

    def _feed(self, subscription: Subscription, on_erasure: ErasureListener | None, after_id: str | None, http: AsyncHttp) -> Feed:
        return listener_feed(
            subscription, on_erasure, after_id, ws_url=websocket_url(self.url), http=http, credentials=self._credentials,
            lookback=self._lookback, resync_interval=self._resync, backoff=_feed_backoff(self.settings),
        )

    def remove_listener(self, fn: Callable[..., Any] | Subscription) -> bool:
        """Stops every listener added with ``fn`` (or that :class:`Subscription`)."""
        self._listeners, removed = split_listeners(self._listeners, fn)
        runner = self._feeds
        if runner is not None:
            inside = threading.current_thread() is runner.thread  # from a listener callback
            for _, _, feed, task in removed:

                async def stop(feed: Feed = feed, task: asyncio.Task[None] = task) -> None:
                    await feed.close()
                    if task is not asyncio.current_task():
                        task.cancel()
                        try:
                            await task
                        except (asyncio.CancelledError, Exception):
                            pass

                if inside:
                    feed.stop()  # no more deliveries; the feed ends once the callback returns
                    runner.loop.create_task(stop())
                else:
                    runner.call(stop())
        return bool(removed)


def _after_fork_in_child(client: AuditClient) -> None:
    ref = weakref.ref(client)

    def reset() -> None:
        forked = ref()
        if forked is not None:
            forked._forked()

    os.register_at_fork(after_in_child=reset)


class _FeedRunner:
    """The sync client's listener thread: an event loop running every feed."""

    def __init__(self, make_http: Callable[[], AsyncHttp]) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="auditline-listeners", daemon=True)
        self.thread.start()
        self.http: AsyncHttp = self.call(self._make(make_http))

    @staticmethod
    async def _make(make_http: Callable[[], AsyncHttp]) -> AsyncHttp:
        return make_http()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def stop(self) -> None:
        async def shutdown() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.http.aclose()

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(timeout=10)
        except Exception:
            log.debug("auditline: listener shutdown did not finish cleanly", exc_info=True)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        if not self.thread.is_alive():
            self.loop.close()
