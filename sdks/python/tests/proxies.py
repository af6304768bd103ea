"""Fault proxies between the SDK and the real gateway, each on an event loop in its own thread.

``HttpFaultProxy`` understands just enough HTTP/1.1 to fail whole requests: for each request it
answers 503 itself (never forwarded; or ``fail_status``: 403 answers as the authorizer refuses a
credential), or forwards it and then cuts the answer (the gateway did the work; the client gets
nothing, or half of it), or forwards it and relays the answer; or, holding, forwards it and never
answers. ``TcpProxy`` relays bytes (HTTP and WebSocket alike) and can cut
every connection at once and refuse new ones for a while: a dropped socket, from the outside.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class _LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=30)

    def close(self) -> None:
        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            self.call(cancel_all())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=5)


async def _read_head(reader: asyncio.StreamReader) -> bytes | None:
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        return None


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return 0


def _with_connection_close(head: bytes) -> bytes:
    lines = [line for line in head.split(b"\r\n") if line and not line.lower().startswith(b"connection:")]
    return b"\r\n".join(lines) + b"\r\nConnection: close\r\n\r\n"


class HttpFaultProxy:
    def __init__(
        self,
        upstream_port: int,
        *,
        fail: float = 0.0,
        cut: float = 0.0,
        hold: bool = False,
        seed: int = 7,
        only_posts: bool = True,
        fail_status: int = 503,
    ) -> None:
        self.upstream_port = upstream_port
        self.fail_status = fail_status
        self.fail = fail
        self.cut = cut
        self.hold = hold
        self.only_posts = only_posts
        self.random = random.Random(seed)
        self.requests = 0
        self.failed = 0
        self.cut_off = 0
        self.forwarded = 0
        self.relayed = 0
        self._runner = _LoopThread()
        self._server: asyncio.base_events.Server | None = None
        self.port = self._runner.call(self._start())
        self.url = f"http://127.0.0.1:{self.port}"

    async def _start(self) -> int:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await _read_head(reader)
                if head is None:
                    return
                body = await reader.readexactly(_content_length(head))
                self.requests += 1
                is_post = head.startswith(b"POST ")
                roll = self.random.random()
                if is_post or not self.only_posts:
                    if roll < self.fail:
                        self.failed += 1
                        code = "unavailable" if self.fail_status == 503 else "internal_error"
                        error = json.dumps(
                            {"error": {"code": code, "message": "proxy says no", "request_id": "proxy"}}
                        ).encode()
                        retry_after = b"retry-after: 0\r\n"
                        if self.fail_status == 403:  # as the authorizer refuses: no envelope
                            error, retry_after = b'{"message":"Forbidden"}', b""
                        writer.write(
                            f"HTTP/1.1 {self.fail_status} Proxy Says No\r\ncontent-type: application/json\r\n".encode()
                            + retry_after
                            + b"content-length: "
                            + str(len(error)).encode()
                            + b"\r\n\r\n"
                            + error
                        )
                        await writer.drain()
                        continue
                answer = await self._forward(head, body)
                self.forwarded += 1
                if self.hold:
                    await asyncio.sleep(3600)
                    return
                if (is_post or not self.only_posts) and self.fail <= roll < self.fail + self.cut:
                    self.cut_off += 1
                    if self.random.random() < 0.5:
                        writer.write(answer[: len(answer) // 2])
                        await writer.drain()
                    writer.close()
                    return
                self.relayed += 1
                writer.write(answer)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()

    async def _forward(self, head: bytes, body: bytes) -> bytes:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        try:
            up_writer.write(_with_connection_close(head) + body)
            await up_writer.drain()
            answer_head = await asyncio.wait_for(up_reader.readuntil(b"\r\n\r\n"), 60)
            if b"content-length:" in answer_head.lower():
                answer_body = await asyncio.wait_for(up_reader.readexactly(_content_length(answer_head)), 60)
            else:
                answer_body = await asyncio.wait_for(up_reader.read(-1), 60)
            return answer_head + answer_body  # the whole answer: the gateway did the work
        finally:
            up_writer.close()

    def close(self) -> None:
        async def stop() -> None:
            if self._server is not None:
                self._server.close()

        self._runner.call(stop())
        self._runner.close()


class TcpProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.refusing_until = 0.0
        self.connections: set[asyncio.StreamWriter] = set()
        self.accepted = 0
        self.refused = 0
        self._runner = _LoopThread()
        self._server: asyncio.base_events.Server | None = None
        self.port = self._runner.call(self._start())
        self.url = f"http://127.0.0.1:{self.port}"

    async def _start(self) -> int:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if asyncio.get_running_loop().time() < self.refusing_until:
            self.refused += 1
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.transport.abort()
            return
        self.accepted += 1
        self.connections.update((writer, up_writer))

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                sink.transport.abort()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        self.connections.discard(writer)
        self.connections.discard(up_writer)

    def cut_all(self, refuse_for: float = 0.0) -> None:
        """Drops every connection at once (no close handshake) and refuses new ones for a while."""

        async def cut() -> None:
            self.refusing_until = asyncio.get_running_loop().time() + refuse_for
            for w in list(self.connections):
                w.transport.abort()

        self._runner.call(cut())

    def close(self) -> None:
        async def stop() -> None:
            if self._server is not None:
                self._server.close()
            for w in list(self.connections):
                w.transport.abort()

        self._runner.call(stop())
        self._runner.close()
