"""HTTP for both clients: credentials on every request, typed errors, retries for reads."""

from __future__ import annotations

import asyncio
import datetime as _dt
import enum
import time
from typing import Any, Mapping

import httpx

from ._common import USER_AGENT, Backoff, Credentials
from ._types import format_timestamp
from .errors import TransportError, error_of

#: Statuses a read retries (with Retry-After), as well as connection failures and timeouts.
READ_RETRY_STATUSES = frozenset({429, 502, 503, 504})

Params = dict[str, str]


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


def _timeout(timeout: float | httpx.Timeout) -> httpx.Timeout:
    if isinstance(timeout, httpx.Timeout):
        return timeout
    return httpx.Timeout(timeout, connect=min(timeout, 10.0))


class SyncHttp:
    def __init__(
        self,
        url: str,
        credentials: Credentials,
        *,
        timeout: float | httpx.Timeout,
        read_retries: int,
        backoff: Backoff,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.credentials = credentials
        self.read_retries = read_retries
        self.backoff = backoff
        self.client = httpx.Client(
            base_url=url.rstrip("/"),
            timeout=_timeout(timeout),
            headers={"User-Agent": USER_AGENT},
            transport=transport,
        )

    def post_batch(self, key: str, body: bytes) -> tuple[int, httpx.Headers, bytes, int]:
        """One attempt at a batch: status, headers, body and the credentials' generation used.
        Connection failures, timeouts and cut answers raise ``httpx.TransportError``."""
        headers = self.credentials.headers_sync()
        generation = self.credentials.generation
        headers["Content-Type"] = "application/json"
        headers["Idempotency-Key"] = key
        response = self.client.post("/audit/logs", content=body, headers=headers)
        return response.status_code, response.headers, response.content, generation

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        json_body: Any = None,
        ok: frozenset[int] = frozenset(),
        retry: bool = True,
    ) -> httpx.Response:
        attempt = 0
        refreshed = False
        while True:
            headers = self.credentials.headers_sync()
            generation = self.credentials.generation
            try:
                response = self.client.request(method, path, params=params, json=json_body, headers=headers)
            except httpx.TransportError as e:
                if not retry or attempt >= self.read_retries:
                    raise TransportError(f"{method} {path}: {type(e).__name__}: {e}") from e
                time.sleep(self.backoff.delay(attempt))
                attempt += 1
                continue
            status = response.status_code
            if status < 400 or status in ok:
                return response
            if status in (401, 403) and not refreshed and self.credentials.invalidate(generation):
                refreshed = True
                continue
            error = error_of(status, response.content, response.headers)
            if retry and status in READ_RETRY_STATUSES and attempt < self.read_retries:
                time.sleep(self.backoff.delay(attempt, error.retry_after))
                attempt += 1
                continue
            raise error

    def close(self) -> None:
        self.client.close()


class AsyncHttp:
    def __init__(
        self,
        url: str,
        credentials: Credentials,
        *,
        timeout: float | httpx.Timeout,
        read_retries: int,
        backoff: Backoff,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.credentials = credentials
        self.read_retries = read_retries
        self.backoff = backoff
        self.client = httpx.AsyncClient(
            base_url=url.rstrip("/"),
            timeout=_timeout(timeout),
            headers={"User-Agent": USER_AGENT},
            transport=transport,
        )

    async def post_batch(self, key: str, body: bytes) -> tuple[int, httpx.Headers, bytes, int]:
        headers = await self.credentials.headers_async()
        generation = self.credentials.generation
        headers["Content-Type"] = "application/json"
        headers["Idempotency-Key"] = key
        response = await self.client.post("/audit/logs", content=body, headers=headers)
        return response.status_code, response.headers, response.content, generation

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        json_body: Any = None,
        ok: frozenset[int] = frozenset(),
        retry: bool = True,
    ) -> httpx.Response:
        attempt = 0
        refreshed = False
        while True:
            headers = await self.credentials.headers_async()
            generation = self.credentials.generation
            try:
                response = await self.client.request(method, path, params=params, json=json_body, headers=headers)
            except httpx.TransportError as e:
                if not retry or attempt >= self.read_retries:
                    raise TransportError(f"{method} {path}: {type(e).__name__}: {e}") from e
                await asyncio.sleep(self.backoff.delay(attempt))
                attempt += 1
                continue
            status = response.status_code
            if status < 400 or status in ok:
                return response
            if status in (401, 403) and not refreshed and self.credentials.invalidate(generation):
                refreshed = True
                continue
            error = error_of(status, response.content, response.headers)
            if retry and status in READ_RETRY_STATUSES and attempt < self.read_retries:
                await asyncio.sleep(self.backoff.delay(attempt, error.retry_after))
                attempt += 1
                continue
            raise error

    async def aclose(self) -> None:
        await self.client.aclose()

