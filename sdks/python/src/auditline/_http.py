"""HTTP for both clients: the only I/O of a call. Each sends a :class:`~auditline._calls.Request`
(built in ``_calls``) with the credentials, and lets ``_calls.Attempts`` say what the answer means:
the answer, another attempt (after a wait), or a typed error."""

from __future__ import annotations

import asyncio
import time

import httpx

from ._calls import Attempts, Request
from ._common import USER_AGENT, Backoff, Credentials

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

    def send_once(self, request: Request) -> tuple[httpx.Response, int]:
        """One attempt: the answer, whatever its status, and the credentials' generation used.
        Connection failures, timeouts and cut answers raise ``httpx.TransportError``."""
        headers = {**self.credentials.headers_sync(), **request.headers}
        generation = self.credentials.generation
        response = self.client.request(
            request.method, request.path, params=request.params, json=request.json, content=request.content,
            headers=headers,
        )
        return response, generation

    def send(self, request: Request) -> httpx.Response:
        """The call's answer, after the retries ``Attempts`` asks for; raises its typed error."""
        attempts = Attempts(request, self.read_retries, self.backoff)
        while True:
            try:
                response, generation = self.send_once(request)
            except httpx.TransportError as e:
                delay = attempts.failed(e)
            else:
                answer = attempts.answered(response, self.credentials, generation)
                if answer is None:
                    return response
                delay = answer
            time.sleep(delay)

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

    async def send_once(self, request: Request) -> tuple[httpx.Response, int]:
        headers = {**(await self.credentials.headers_async()), **request.headers}
        generation = self.credentials.generation
        response = await self.client.request(
            request.method, request.path, params=request.params, json=request.json, content=request.content,
            headers=headers,
        )
        return response, generation

    async def send(self, request: Request) -> httpx.Response:
        attempts = Attempts(request, self.read_retries, self.backoff)
        while True:
            try:
                response, generation = await self.send_once(request)
            except httpx.TransportError as e:
                delay = attempts.failed(e)
            else:
                answer = attempts.answered(response, self.credentials, generation)
                if answer is None:
                    return response
                delay = answer
            await asyncio.sleep(delay)

    async def aclose(self) -> None:
        await self.client.aclose()
