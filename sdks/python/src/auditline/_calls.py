"""Every call of the HTTP API as data: the request it sends, and what its answer means.

Pure functions and small state machines, no I/O. Both clients build their requests here and hand
each answer back here; all they do themselves is send (``httpx.Client`` in :class:`SyncHttp`,
``httpx.AsyncClient`` in :class:`AsyncHttp`) and wait (``time.sleep`` / ``asyncio.sleep``). So the
method, path, query, body and headers of a call, its retries and credential refresh, and the typed
error an answer maps to are written once, for both.
"""

from __future__ import annotations

import datetime as _dt
import enum
import os
import urllib.parse
from dataclasses import dataclass, field
from types import TracebackType
from typing import IO, Any, Mapping

import httpx

from ._common import ActionLike, Backoff, Credentials, action_name
from ._types import AuditLogEntry, EntityType, ExportResult, Health, Page, Stats, format_timestamp
from .errors import InvalidEntry, TransportError, error_of

Params = dict[str, str]

#: Statuses a read retries (with Retry-After), as well as connection failures and timeouts.
READ_RETRY_STATUSES = frozenset({429, 502, 503, 504})

EXPORT_FORMATS = ("jsonl", "csv", "ocsf")


@dataclass(frozen=True)
class Request:
    """One HTTP request of the API, as both clients send it."""

    method: str
    path: str
    params: Params | None = None
    json: Any = None
    content: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    #: Error statuses that are an answer, not an error (the health check's 503).
    ok: frozenset[int] = frozenset()
    #: A read: sent again after a connection failure, a timeout or a status of READ_RETRY_STATUSES.
    retry: bool = True


# -- building --------------------------------------------------------------------------------


def query_params(values: Mapping[str, Any]) -> Params:
    """Query parameters from keyword filters: ``None`` left out, enums by value, dates in ISO 8601."""
    params: Params = {}
    for name, value in values.items():
        if value is None:
            continue
        if isinstance(value, enum.Enum):
            params[name] = str(value.value)
        elif isinstance(value, (_dt.datetime, _dt.date)):
            params[name] = format_timestamp(value)
        elif isinstance(value, bool):
            params[name] = "true" if value else "false"
        else:
            params[name] = str(value)
    return params


def filter_entity_type(entity_type: EntityType | str) -> str:
    """Entity types to read by: every type, the service's own records included."""
    name = entity_type.value if isinstance(entity_type, EntityType) else str(entity_type)
    if name.upper() in EntityType.__members__:
        return name.upper()
    raise InvalidEntry(f"entity_type must be one of {sorted(EntityType.__members__)}, not {entity_type!r}")


def filters(
    action: ActionLike | None,
    entity_type: EntityType | str | None,
    user_id: str | None,
    start_date: _dt.datetime | _dt.date | str | None,
    end_date: _dt.datetime | _dt.date | str | None,
    offset: int | None = None,
) -> Params:
    """The list calls' filters as query parameters."""
    return query_params(
        {
            "action": None if action is None else action_name(action),
            "entity_type": None if entity_type is None else filter_entity_type(entity_type),
            "user_id": user_id,
            "start_date": start_date,
            "end_date": end_date,
            "offset": offset,
        }
    )


def segment(value: str) -> str:
    return urllib.parse.quote(value, safe="")


LOGS = "/audit/logs"


def entity_path(entity_id: str) -> str:
    return "/audit/logs/entity/" + segment(entity_id)


def project_path(project_id: str) -> str:
    return "/audit/logs/project/" + segment(project_id)


def list_path(entity_id: str | None, project_id: str | None) -> str:
    if entity_id is not None and project_id is not None:
        raise ValueError("pass entity_id or project_id, not both")
    if entity_id is not None:
        return entity_path(entity_id)
    if project_id is not None:
        return project_path(project_id)
    return LOGS


def page_size_of(limit: int | None, page_size: int) -> int:
    if not 1 <= page_size <= 1000:
        raise ValueError("page_size must be 1 to 1000")
    if limit is not None and limit < 0:
        raise ValueError("limit must be >= 0")
    return page_size if limit is None else max(1, min(page_size, limit))


def page(path: str, params: Params, limit: int | None = None, next_token: str | None = None) -> Request:
    """``GET`` of one page of a list route."""
    query = dict(params)
    query.update(query_params({"limit": limit, "next_token": next_token}))
    return Request("GET", path, params=query)


def entry(entry_id: str) -> Request:
    return Request("GET", "/audit/logs/" + segment(entry_id))


def stats(
    start_date: _dt.datetime | _dt.date | str | None,
    end_date: _dt.datetime | _dt.date | str | None,
    bucket: str | None,
) -> Request:
    return Request("GET", "/audit/stats", params=query_params({"start_date": start_date, "end_date": end_date, "bucket": bucket}))


def health() -> Request:
    return Request("GET", "/audit/health", ok=frozenset({503}))


def export_params(
    format: str,
    action: ActionLike | None,
    entity_type: EntityType | str | None,
    user_id: str | None,
    entity_id: str | None,
    project_id: str | None,
    start_date: _dt.datetime | _dt.date | str | None,
    end_date: _dt.datetime | _dt.date | str | None,
) -> Params:
    if format not in EXPORT_FORMATS:
        raise ValueError(f"format must be one of {EXPORT_FORMATS}")
    if entity_id is not None and project_id is not None:
        raise ValueError("pass entity_id or project_id, not both")
    params = filters(action, entity_type, user_id, start_date, end_date)
    params.update(query_params({"format": format, "entity_id": entity_id, "project_id": project_id}))
    return params


def batch(key: str, body: bytes) -> Request:
    """One attempt at a batch of entries: the same body under the same ``Idempotency-Key`` every
    time. Not retried here: the write pipeline judges each answer (``_pipeline.judge``)."""
    return Request(
        "POST",
        LOGS,
        content=body,
        headers={"Content-Type": "application/json", "Idempotency-Key": key},
        retry=False,
    )


# -- answers ---------------------------------------------------------------------------------


def parse_page(response: httpx.Response) -> Page:
    return Page.from_json(response.json())


def parse_entry(response: httpx.Response) -> AuditLogEntry:
    return AuditLogEntry.from_json(response.json())


def parse_stats(response: httpx.Response) -> Stats:
    return Stats.from_json(response.json())


def parse_health(response: httpx.Response) -> Health:
    return Health.from_json(response.json())


class Attempts:
    """The attempts of one request: after each, whether to send it again and after how long, or
    the typed error it ends with (:func:`~auditline.errors.error_of`, which takes the service's
    envelope and API Gateway's envelope-less ``{"message": …}`` alike).

    A refused credential (401/403) is refreshed once through a token provider, and the request
    sent again at once; a read is retried ``read_retries`` times after a connection failure, a
    timeout, 429 or 502–504 (at least ``Retry-After`` apart)."""

    def __init__(self, request: Request, read_retries: int, backoff: Backoff) -> None:
        self.request = request
        self.read_retries = read_retries
        self.backoff = backoff
        self.attempt = 0
        self.refreshed = False

    def failed(self, error: httpx.TransportError) -> float:
        """No (whole) answer: seconds to wait before the next attempt, or :class:`TransportError`."""
        if not self.request.retry or self.attempt >= self.read_retries:
            raise TransportError(f"{self.request.method} {self.request.path}: {type(error).__name__}: {error}") from error
        delay = self.backoff.delay(self.attempt)
        self.attempt += 1
        return delay

    def answered(self, response: httpx.Response, credentials: Credentials, generation: int) -> float | None:
        """``None``: ``response`` is the call's answer. A number: send again after that many
        seconds. Otherwise raises the answer's typed :class:`~auditline.errors.ApiError`."""
        status = response.status_code
        if status < 400 or status in self.request.ok:
            return None
        if status in (401, 403) and not self.refreshed and credentials.invalidate(generation):
            self.refreshed = True
            return 0.0
        error = error_of(status, response.content, response.headers)
        if self.request.retry and status in READ_RETRY_STATUSES and self.attempt < self.read_retries:
            delay = self.backoff.delay(self.attempt, error.retry_after)
            self.attempt += 1
            return delay
        raise error


class Pager:
    """The pages of a list call (``next_token``), and the entries to hand out of each: ``limit``
    caps the total, ``page_size`` is each request's ``limit``."""

    def __init__(self, path: str, params: Params, limit: int | None, page_size: int) -> None:
        self.path = path
        self.query = dict(params)
        self.query["limit"] = str(page_size_of(limit, page_size))
        self.remaining = limit
        self.done = False

    def next(self) -> Request | None:
        """The next page's request, or ``None`` when there is no more to read."""
        if self.done or (self.remaining is not None and self.remaining <= 0):
            return None
        return Request("GET", self.path, params=dict(self.query))

    def take(self, page: Page) -> list[AuditLogEntry]:
        entries = page.entries
        if self.remaining is not None:
            entries = entries[: self.remaining]
            self.remaining -= len(entries)
        if page.next_token:
            self.query["next_token"] = page.next_token
        else:
            self.done = True
        return entries


def logs(
    path: str,
    action: ActionLike | None,
    entity_type: EntityType | str | None,
    user_id: str | None,
    start_date: _dt.datetime | _dt.date | str | None,
    end_date: _dt.datetime | _dt.date | str | None,
    offset: int | None,
    limit: int | None,
    page_size: int,
) -> Pager:
    """``get_logs`` and its kin: every page of ``path`` with these filters."""
    return Pager(path, filters(action, entity_type, user_id, start_date, end_date, offset), limit, page_size)


class ExportPager:
    """The pages of an export (``x-next-token``): each page's bytes and its entry count."""

    def __init__(self, params: Params) -> None:
        self.query = dict(params)
        self.done = False

    def next(self) -> Request | None:
        return None if self.done else Request("GET", "/audit/export", params=dict(self.query))

    def take(self, response: httpx.Response) -> tuple[bytes, int]:
        token = response.headers.get("x-next-token")
        if token:
            self.query["next_token"] = token
        else:
            self.done = True
        return response.content, int(response.headers.get("x-entry-count", "0") or 0)


def export(
    format: str,
    action: ActionLike | None,
    entity_type: EntityType | str | None,
    user_id: str | None,
    entity_id: str | None,
    project_id: str | None,
    start_date: _dt.datetime | _dt.date | str | None,
    end_date: _dt.datetime | _dt.date | str | None,
) -> ExportPager:
    return ExportPager(export_params(format, action, entity_type, user_id, entity_id, project_id, start_date, end_date))


class ExportFile:
    """``export(path=)``: the pages go to ``<path>.part``, which is synced and renamed to ``path``
    once the last page is in (an export cut short leaves only the ``.part``)."""

    def __init__(self, path: str | os.PathLike[str] | None, format: str) -> None:
        if path is None:
            raise TypeError("export() needs path=: the file to write")
        self.path = os.fspath(path)
        self.partial = self.path + ".part"
        self.format = format
        self.entries = self.pages = self.bytes = 0
        self._out: IO[bytes] | None = None

    def __enter__(self) -> ExportFile:
        self._out = open(self.partial, "wb")
        return self

    def write(self, page: tuple[bytes, int]) -> None:
        content, count = page
        assert self._out is not None
        self._out.write(content)
        self.entries += count
        self.pages += 1
        self.bytes += len(content)

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        out, self._out = self._out, None
        assert out is not None
        with out:
            if kind is not None:
                return
            out.flush()
            os.fsync(out.fileno())
        os.replace(self.partial, self.path)

    @property
    def result(self) -> ExportResult:
        return ExportResult(path=self.path, format=self.format, entries=self.entries, pages=self.pages, bytes=self.bytes)
