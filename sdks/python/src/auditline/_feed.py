"""The live feed behind ``add_listener``: a WebSocket that reconnects and catches up over HTTP.

The service's feed is at least once, and a socket can drop (network, the 2-hour limit, a token's
expiry, a client too slow, a gateway restart). Each listener therefore keeps:

* a **floor**: the newest matching entry when it was added (or ``after_id=``). Only entries above
  it are delivered — the listener sees what happens from its start, and nothing before.
* the **entries delivered**, by id (UUIDv7: ids sort in time order), pruned past the catch-up window.

On every (re)connection, *after* the socket is open (so nothing can fall between the two), it reads
``GET /audit/logs`` (or the project route) with the listener's filters from the last delivered
entry's time minus ``lookback`` seconds, delivers in id order what it has not delivered, then the
messages that arrived on the socket meanwhile, skipping ids already delivered. ``lookback`` covers
entries committed a little after their timestamp (a retried keyed batch keeps its first stamp).
Every ``resync_interval`` seconds the same catch-up runs on an open socket too, for entries the
feed itself gave up on while the socket stayed open.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import json
import logging
import time
import urllib.parse
from typing import Any, Awaitable, Callable, Union

import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from ._common import USER_AGENT, ActionLike, Backoff, Credentials, action_name
from . import _calls as calls
from ._calls import query_params
from ._http import AsyncHttp
from ._types import AuditLogEntry, EntityType, ErasureNotice, Page
from .errors import ApiError, AuthError

log = logging.getLogger("auditline")

Listener = Callable[[AuditLogEntry], Union[None, Awaitable[None]]]
ErasureListener = Callable[[ErasureNotice], Union[None, Awaitable[None]]]

_CLOSED = object()


def id_millis(entry_id: str) -> int:
    """The millisecond a UUIDv7 was minted at (0 for anything else)."""
    hexa = entry_id.replace("-", "")
    try:
        return int(hexa[:12], 16) if len(hexa) == 32 and hexa[12] == "7" else 0
    except ValueError:
        return 0


def millis_iso(ms: int) -> str:
    seconds, rest = divmod(max(ms, 0), 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{rest:03d}Z"


class Subscription:
    """One listener's feed, as ``add_listener`` returns it: its state and counters."""

    def __init__(
        self,
        fn: Callable[..., Any],
        project_id: str | None,
        entity_type: str | None,
        action: str | None,
    ) -> None:
        self.fn = fn
        self.project_id = project_id
        self.entity_type = entity_type
        self.action = action
        #: The socket is open and caught up.
        self.connected = False
        #: Entries handed to the listener (each id once).
        self.delivered = 0
        #: Of those, found by a catch-up rather than pushed.
        self.caught_up = 0
        #: Pushed entries dropped as already delivered (the feed is at least once).
        self.duplicates = 0
        #: Entries that arrived below an id already delivered (delivered all the same).
        self.out_of_order = 0
        #: Connection attempts after the first (after a drop, a refusal or a failed catch-up).
        self.reconnects = 0
        #: The highest id delivered.
        self.last_id: str | None = None
        #: The last error that closed or refused the socket.
        self.last_error: str | None = None
        self._feed: Feed | None = None

    def __repr__(self) -> str:
        return (
            f"<Subscription {getattr(self.fn, '__name__', self.fn)!s} connected={self.connected} "
            f"delivered={self.delivered} reconnects={self.reconnects}>"
        )


class Feed:
    def __init__(
        self,
        *,
        ws_url: str,
        http: AsyncHttp,
        credentials: Credentials,
        subscription: Subscription,
        deliver: Callable[[AuditLogEntry], Awaitable[None]],
        on_erasure: Callable[[ErasureNotice], Awaitable[None]] | None,
        after_id: str | None,
        lookback: float,
        resync_interval: float | None,
        backoff: Backoff,
        open_timeout: float,
    ) -> None:
        self.sub = subscription
        subscription._feed = self
        self.http = http
        self.credentials = credentials
        self.deliver = deliver
        self.on_erasure = on_erasure
        self.lookback_ms = int(lookback * 1000)
        self.resync_interval = resync_interval
        self.backoff = backoff
        self.open_timeout = open_timeout
        filters = query_params({"entity_type": subscription.entity_type, "action": subscription.action})
        if subscription.project_id is not None:
            filters["project_id"] = subscription.project_id
        self.url = ws_url + ("?" + urllib.parse.urlencode(filters) if filters else "")
        self.list_filters = {k: v for k, v in filters.items() if k != "project_id"}
        self.list_path = calls.list_path(None, subscription.project_id)
        self.floor: str | None = after_id
        self.floor_known = after_id is not None
        self.catch_up_enabled = True
        self.seen: collections.OrderedDict[str, int] = collections.OrderedDict()
        self.last_ms: int | None = None
        self.ready = asyncio.Event()
        self.stopped = False
        self.ws: ClientConnection | None = None

    # -- the loop ------------------------------------------------------------------------------

    async def run(self) -> None:
        attempt = 0
        while not self.stopped:
            began = time.monotonic()
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # every failure ends in a reconnection
                self.sub.last_error = f"{type(e).__name__}: {e}"
                if isinstance(e, InvalidStatus) and e.response.status_code in (401, 403):
                    self.credentials.invalidate(self.credentials.generation)
                log.info("auditline feed: %s; reconnecting", self.sub.last_error)
            finally:
                self.sub.connected = False
                self.ws = None
            if self.stopped:
                break
            self.sub.reconnects += 1
            if time.monotonic() - began > 10:
                attempt = 0
            await asyncio.sleep(self.backoff.delay(attempt))
            attempt += 1

    async def _session(self) -> None:
        if not self.floor_known:
            await self._find_floor()
        headers = await self.credentials.headers_async()
        headers["User-Agent"] = USER_AGENT
        async with connect(
            self.url,
            additional_headers=headers,
            open_timeout=self.open_timeout,
            max_size=None,
            ping_interval=20,
            ping_timeout=20,
            close_timeout=2,
        ) as ws:
            self.ws = ws
            queue: asyncio.Queue[object] = asyncio.Queue()
            reader = asyncio.create_task(self._read(ws, queue))
            try:
                await self._catch_up()
                self.sub.connected = True
                self.ready.set()
                next_resync = None if self.resync_interval is None else time.monotonic() + self.resync_interval
                while not self.stopped:
                    timeout = None if next_resync is None else max(0.0, next_resync - time.monotonic())
                    try:
                        message = await asyncio.wait_for(queue.get(), timeout)
                    except asyncio.TimeoutError:
                        await self._catch_up()
                        assert self.resync_interval is not None
                        next_resync = time.monotonic() + self.resync_interval
                        continue
                    if message is _CLOSED:
                        raise ConnectionError(f"the feed closed ({ws.close_code} {ws.close_reason or ''})".strip())
                    if isinstance(message, BaseException):
                        raise message
                    await self._handle(message)
            finally:
                reader.cancel()
                try:
                    await reader
                except (asyncio.CancelledError, Exception):
                    pass

    async def _read(self, ws: ClientConnection, queue: asyncio.Queue[object]) -> None:
        try:
            async for message in ws:
                queue.put_nowait(message)
        except websockets.ConnectionClosed:
            pass
        except Exception as e:
            queue.put_nowait(e)
            return
        queue.put_nowait(_CLOSED)

    def stop(self) -> None:
        self.stopped = True

    # -- catch-up ------------------------------------------------------------------------------

    async def _find_floor(self) -> None:
        """The newest matching entry now: the listener delivers only what comes after it."""
        try:
            page = await self._page({**self.list_filters, "limit": "1"})
        except AuthError as e:
            self._no_catch_up(e)
        else:
            self.floor = page.entries[0].id if page.entries else None
        self.floor_known = True

    def _no_catch_up(self, e: ApiError) -> None:
        if self.catch_up_enabled:
            log.warning(
                "auditline feed: cannot read the trail over HTTP (%s): live entries only, no catch-up after a drop", e
            )
        self.catch_up_enabled = False

    async def _page(self, params: dict[str, str]) -> Page:
        return calls.parse_page(await self.http.send(calls.page(self.list_path, params)))

    async def _catch_up(self) -> None:
        if not self.catch_up_enabled:
            return
        since = self.last_ms if self.last_ms is not None else (id_millis(self.floor) if self.floor else None)
        params = dict(self.list_filters)
        params["limit"] = "1000"
        if since is not None:
            params["start_date"] = millis_iso(since - self.lookback_ms)
        found: list[AuditLogEntry] = []
        try:
            while True:
                page = await self._page(params)
                found.extend(page.entries)
                if not page.next_token:
                    break
                params["next_token"] = page.next_token
        except AuthError as e:
            self._no_catch_up(e)
            return
        found.sort(key=lambda e: e.id)
        for entry in found:
            if await self._offer(entry):
                self.sub.caught_up += 1
        self._prune()

    def _prune(self) -> None:
        if self.last_ms is None:
            return
        horizon = self.last_ms - self.lookback_ms - 60_000
        while self.seen and (len(self.seen) > 200_000 or next(iter(self.seen.values())) < horizon):
            self.seen.popitem(last=False)

    # -- messages ------------------------------------------------------------------------------

    async def _handle(self, message: object) -> None:
        try:
            data = json.loads(message)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            log.debug("auditline feed: a message that is not JSON, ignored")
            return
        if not isinstance(data, dict):
            return
        kind = data.get("type")
        if kind == "audit_entry":
            entry = AuditLogEntry.from_json(data["entry"])
            if not await self._offer(entry):
                self.sub.duplicates += 1
        elif kind == "audit_entry_notice":
            summary = data.get("entry") or {}
            entry_id = summary.get("id")
            if isinstance(entry_id, str) and entry_id not in self.seen and not self._below_floor(entry_id):
                await self._offer(calls.parse_entry(await self.http.send(calls.entry(entry_id))))
        elif kind == "erasure":
            if self.on_erasure is not None:
                try:
                    await self.on_erasure(ErasureNotice.from_json(data))
                except Exception:
                    log.exception("auditline: on_erasure raised")

    def _below_floor(self, entry_id: str) -> bool:
        return self.floor is not None and entry_id <= self.floor

    async def _offer(self, entry: AuditLogEntry) -> bool:
        """Delivers ``entry`` unless already delivered or below the floor."""
        if self.stopped or entry.id in self.seen or self._below_floor(entry.id):
            return False
        ms = id_millis(entry.id)
        self.seen[entry.id] = ms
        sub = self.sub
        if sub.last_id is None or entry.id > sub.last_id:
            sub.last_id = entry.id
            self.last_ms = ms
        else:
            sub.out_of_order += 1
        sub.delivered += 1
        try:
            await self.deliver(entry)
        except Exception:
            log.exception("auditline: a listener raised")
        if self.on_erasure is not None:
            notice = ErasureNotice.from_record(entry)
            if notice is not None:
                try:
                    await self.on_erasure(notice)
                except Exception:
                    log.exception("auditline: on_erasure raised")
        return True

    async def close(self) -> None:
        self.stopped = True
        ws = self.ws
        if ws is not None:
            await ws.close()


def as_async(fn: Callable[[Any], Any]) -> Callable[[Any], Awaitable[None]]:
    """A listener, sync or async, as a coroutine function."""

    async def call(value: Any) -> None:
        result = fn(value)
        if inspect.isawaitable(result):
            await result

    return call



#: A listener of a client: its function, its Subscription, its Feed and the task running it.
ListenerRecord = tuple[Callable[..., Any], Subscription, Feed, "asyncio.Task[None]"]


def subscribe(
    fn: Callable[..., Any], project_id: str | None, entity_type: EntityType | str | None, action: ActionLike | None
) -> Subscription:
    """``add_listener``'s subscription (both clients), its filters checked."""
    return Subscription(
        fn,
        project_id,
        None if entity_type is None else calls.filter_entity_type(entity_type),
        None if action is None else action_name(action),
    )


def listener_feed(
    subscription: Subscription,
    on_erasure: ErasureListener | None,
    after_id: str | None,
    *,
    ws_url: str,
    http: AsyncHttp,
    credentials: Credentials,
    lookback: float,
    resync_interval: float | None,
    backoff: Backoff,
) -> Feed:
    """``add_listener``'s feed (both clients)."""
    return Feed(
        ws_url=ws_url,
        http=http,
        credentials=credentials,
        subscription=subscription,
        deliver=as_async(subscription.fn),
        on_erasure=None if on_erasure is None else as_async(on_erasure),
        after_id=after_id,
        lookback=lookback,
        resync_interval=resync_interval,
        backoff=backoff,
        open_timeout=10.0,
    )


def split_listeners(
    listeners: list[ListenerRecord], fn: Callable[..., Any] | Subscription
) -> tuple[list[ListenerRecord], list[ListenerRecord]]:
    """``remove_listener(fn)``: the listeners kept, and those removed (added with ``fn``, or ``fn``'s)."""
    kept: list[ListenerRecord] = []
    removed: list[ListenerRecord] = []
    for entry in listeners:
        (removed if entry[0] is fn or entry[1] is fn else kept).append(entry)
    return kept, removed
