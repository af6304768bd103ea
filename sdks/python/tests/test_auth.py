"""A refused credential is an ``AuthError`` whichever shape the refusal takes: the authorizer's
envelope-less ``403 {"message": "Forbidden"}`` (API Gateway on AWS, and the local gateway, which
answers as it does) or the service's own envelope (``401 unauthenticated``, ``403 forbidden`` for
a missing scope, with a ``request_id``). The AWS shapes come from a tiny local HTTP server.

A write refused so is not lost: its entry stays queued, each refusal is logged (the ``AuthError``
in the record's ``auditline_error``), and only ``close()`` without a spool fails its handle — with
that ``AuthError``."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from auditline import ApiError, AsyncAuditClient, AuditClient, AuthError
from gateway import Gateway

REQUEST_ID = "4b8f7a0e-0000-4000-8000-000000000001"

#: (status, body, code, message, request_id)
SHAPES = [
    (403, b'{"message":"Forbidden"}', "forbidden", "Forbidden", None),
    (401, b'{"message":"Unauthorized"}', "unauthenticated", "Unauthorized", None),
    (
        403,
        b'{"error":{"code":"forbidden","message":"the audit:read scope is required","request_id":"' + REQUEST_ID.encode() + b'"}}',
        "forbidden",
        "the audit:read scope is required",
        REQUEST_ID,
    ),
    (
        401,
        b'{"error":{"code":"unauthenticated","message":"authentication is required","request_id":"' + REQUEST_ID.encode() + b'"}}',
        "unauthenticated",
        "authentication is required",
        REQUEST_ID,
    ),
]


class _Answering(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, status: int, body: bytes) -> None:
        self.status = status
        self.body = body
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: _Answering

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        self.send_response(self.server.status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(self.server.body)))
        self.end_headers()
        self.wfile.write(self.server.body)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(params=SHAPES, ids=["aws-403", "aws-401", "envelope-403", "envelope-401"])
def refusing(request: pytest.FixtureRequest) -> Iterator[tuple[_Answering, str, str, str | None]]:
    status, body, code, message, request_id = request.param
    server = _Answering(status, body)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, code, message, request_id
    server.shutdown()
    server.server_close()


def _check(error: BaseException, status: int, code: str, message: str, request_id: str | None) -> None:
    assert isinstance(error, AuthError) and isinstance(error, ApiError), repr(error)
    assert (error.status, error.code, error.message, error.request_id) == (status, code, message, request_id)


def refusals(caplog: pytest.LogCaptureFixture) -> list[AuthError]:
    """The AuthErrors the clients logged for refused writes."""
    errors = [getattr(r, "auditline_error", None) for r in caplog.records if r.name == "auditline"]
    return [e for e in errors if isinstance(e, AuthError)]


def wait_for_refusals(caplog: pytest.LogCaptureFixture, count: int, timeout: float = 10.0) -> list[AuthError]:
    deadline = time.monotonic() + timeout
    while len(found := refusals(caplog)) < count:
        assert time.monotonic() < deadline, f"only {len(found)} refusals logged"
        time.sleep(0.02)
    return found


def test_both_shapes_of_a_refusal_are_an_auth_error(
    refusing: tuple[_Answering, str, str, str | None], caplog: pytest.LogCaptureFixture
) -> None:
    server, code, message, request_id = refusing
    caplog.set_level(logging.WARNING, logger="auditline")
    with AuditClient(server.url, api_key="alk_x", linger=0.01, backoff_max=0.05, flush_at_exit=False) as audit:
        for read in (
            lambda: audit.get_log(str(uuid.uuid4())),
            lambda: list(audit.get_logs(limit=1)),
            lambda: audit.get_stats(),
            lambda: audit.get_page(),
        ):
            with pytest.raises(AuthError) as refused:
                read()
            _check(refused.value, server.status, code, message, request_id)
        handle = audit.log_create("FILE", "x")
        for refusal in wait_for_refusals(caplog, 3):
            _check(refusal, server.status, code, message, request_id)
        assert not audit.flush(timeout=0.2) and not handle.done(), "a refused write stays queued"
        audit.close(timeout=0.1)
        error = handle.exception(timeout=0)
        assert error is not None
        _check(error, server.status, code, message, request_id)


async def test_both_shapes_of_a_refusal_are_an_auth_error_async(
    refusing: tuple[_Answering, str, str, str | None], caplog: pytest.LogCaptureFixture
) -> None:
    server, code, message, request_id = refusing
    caplog.set_level(logging.WARNING, logger="auditline")
    async with AsyncAuditClient(server.url, api_key="alk_x", linger=0.01, backoff_max=0.05) as audit:
        with pytest.raises(AuthError) as refused:
            await audit.get_log(str(uuid.uuid4()))
        _check(refused.value, server.status, code, message, request_id)
        with pytest.raises(AuthError) as refused:
            [e async for e in audit.get_logs(limit=1)]
        _check(refused.value, server.status, code, message, request_id)
        handle = audit.log_create("FILE", "x")
        assert not await audit.flush(timeout=0.3) and not handle.done(), "a refused write stays queued"
        for refusal in refusals(caplog):
            _check(refusal, server.status, code, message, request_id)
        assert refusals(caplog)
        await audit.close(timeout=0.1)
        with pytest.raises(AuthError) as refused:
            await handle
        _check(refused.value, server.status, code, message, request_id)


def test_a_token_provider_is_asked_again_after_either_shape(refusing: tuple[_Answering, str, str, str | None]) -> None:
    server, code, message, request_id = refusing
    asked: list[int] = []

    def provider() -> str:
        asked.append(1)
        return f"token-{len(asked)}"

    with AuditClient(server.url, token_provider=provider, flush_at_exit=False) as audit:
        with pytest.raises(AuthError) as refused:
            audit.get_log(str(uuid.uuid4()))
        _check(refused.value, server.status, code, message, request_id)
    assert len(asked) == 2, "refused once, asked once more, then the refusal is the answer"


def test_a_refused_write_asks_the_token_provider_again_at_every_attempt(
    refusing: tuple[_Answering, str, str, str | None], caplog: pytest.LogCaptureFixture
) -> None:
    server, code, message, request_id = refusing
    caplog.set_level(logging.WARNING, logger="auditline")
    asked: list[int] = []

    def provider() -> str:
        asked.append(1)
        return f"token-{len(asked)}"

    audit = AuditClient(server.url, token_provider=provider, linger=0.01, backoff_max=0.05, flush_at_exit=False)
    handle = audit.log_create("FILE", "x")
    logged = len(wait_for_refusals(caplog, 3))
    assert len(asked) >= logged + 1, f"{len(asked)} tokens asked for {logged} refused attempts"
    assert not handle.done()
    audit.close(timeout=0.1)
    error = handle.exception(timeout=0)
    assert error is not None
    _check(error, server.status, code, message, request_id)


async def test_the_real_gateway_refuses_a_bad_key_with_an_auth_error(gateway: Gateway) -> None:
    # Today the local gateway answers as API Gateway's authorizer does (no envelope); the SDK's
    # answer does not depend on which shape it is.
    with AuditClient(gateway.url, api_key="alk_not-a-key", flush_at_exit=False) as stranger:
        with pytest.raises(AuthError) as refused:
            stranger.get_log(str(uuid.uuid4()))
        assert (refused.value.status, refused.value.code) == (403, "forbidden")
    async with AsyncAuditClient(gateway.url, api_key="alk_not-a-key") as stranger_async:
        with pytest.raises(AuthError) as refused:
            await stranger_async.get_stats()
        assert (refused.value.status, refused.value.code) == (403, "forbidden")
