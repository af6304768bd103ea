"""Every exception the SDK raises or fails a handle with derives from :class:`AuditlineError`.

Errors the server answered carry its envelope ``{"error": {"code", "message", "parameter",
"request_id"}}`` and the HTTP status: :class:`ApiError` and its subclasses. An entry the server
refused is a :class:`Rejected` (also an :class:`ApiError`), with the entry as it was sent.
"""

from __future__ import annotations

import json
from typing import Any, Mapping


class AuditlineError(Exception):
    """Base of every error of this package."""


class ApiError(AuditlineError):
    """The server answered with an error. ``code``, ``message``, ``parameter`` and ``request_id``
    are its envelope's; ``status`` the HTTP status; ``retry_after`` its ``Retry-After`` in seconds."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        parameter: str | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.parameter = parameter
        self.request_id = request_id
        self.retry_after = retry_after
        super().__init__(self._describe())

    def _describe(self) -> str:
        text = f"{self.status} {self.code}: {self.message}"
        if self.parameter:
            text += f" (parameter {self.parameter})"
        if self.request_id:
            text += f" [request_id {self.request_id}]"
        return text

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            type(self),
            (self.status, self.code, self.message, self.parameter, self.request_id, self.retry_after),
        )


class BadRequest(ApiError):
    """400: a parameter, header or field is invalid (named in ``parameter``)."""


class AuthError(ApiError):
    """401/403: missing, invalid or expired credentials, or a missing scope. API Gateway (and the
    local gateway) answer a refused credential with 403 ``{"message": "Forbidden"}`` and no
    envelope: ``code`` is then ``forbidden`` and ``request_id`` is ``None``. Reads raise it; a
    refused write keeps its entries queued (each refusal is logged with it) and only ``close()``
    without a spool fails their handles with it."""


class NotFound(ApiError):
    """404: no such entry for this caller (another tenant's ids look the same)."""


class Conflict(ApiError):
    """409: e.g. ``idempotency_in_progress``, ``period_sealed``, ``legal_hold``."""


class PayloadTooLarge(ApiError):
    """413: the body is over 1 MiB."""


class IdempotencyKeyReused(ApiError):
    """422: the ``Idempotency-Key`` was used for another body."""


class RateLimited(ApiError):
    """429: storage is throttling; retry after ``retry_after`` seconds."""


class ServiceUnavailable(ApiError):
    """503: storage is unavailable; retry after ``retry_after`` seconds."""


class ServerError(ApiError):
    """500 (or another 5xx): only a ``request_id`` to quote."""


class Rejected(ApiError):
    """An entry the server refused (or, with ``code`` ``disabled``, did not store because audit
    logging is switched off there). ``entry`` is the entry as sent."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        parameter: str | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
        entry: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(status, code, message, parameter, request_id, retry_after)
        self.entry: dict[str, Any] = dict(entry) if entry is not None else {}

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            type(self),
            (self.status, self.code, self.message, self.parameter, self.request_id, self.retry_after, self.entry),
        )

    @classmethod
    def of(cls, error: ApiError, entry: Mapping[str, Any] | None) -> Rejected:
        return cls(
            error.status, error.code, error.message, error.parameter, error.request_id, error.retry_after, entry
        )


class InvalidEntry(AuditlineError, ValueError):
    """An entry refused before it was queued: unknown action or entity type, a field of the wrong
    type, a payload that is not JSON, or an entry larger than a request may be."""


class TransportError(AuditlineError):
    """The service could not be reached, or its answer was cut off (reads, after their retries)."""


class QueueFull(AuditlineError):
    """``log_*`` found the queue at ``max_queue`` (policy ``raise``, or ``block`` past its timeout)."""


class Dropped(AuditlineError):
    """The entry was taken out of a full queue to make room (policy ``drop_oldest``); never sent."""


class NotDelivered(AuditlineError):
    """The client was closed before the entry was settled. ``spooled`` says whether the entry is
    still in the spool, where the next client on that directory will send it."""

    def __init__(self, message: str, *, spooled: bool = False) -> None:
        super().__init__(message)
        self.spooled = spooled


class SpoolError(AuditlineError):
    """The spool could not be written or read (disk full, permissions, another process holds it)."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: AuthError,
    403: AuthError,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: IdempotencyKeyReused,
    429: RateLimited,
    503: ServiceUnavailable,
}


def retry_after_of(headers: Mapping[str, str]) -> float | None:
    """``Retry-After`` as seconds (delta-seconds only; an HTTP date counts as absent)."""
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def error_of(status: int, body: bytes, headers: Mapping[str, str]) -> ApiError:
    """The typed error for an answer with a non-success status."""
    code, message, parameter, request_id = _envelope(status, body)
    kind = _BY_STATUS.get(status) or (ServerError if status >= 500 else ApiError)
    return kind(status, code, message, parameter, request_id, retry_after_of(headers))


def error_of_item(status: int, error: Mapping[str, Any] | None, entry: Mapping[str, Any] | None) -> Rejected:
    """The rejection for one item of a batch answer."""
    error = error or {}
    return Rejected(
        status,
        str(error.get("code") or _default_code(status)),
        str(error.get("message") or f"the entry was refused with status {status}"),
        error.get("parameter"),
        error.get("request_id"),
        None,
        entry,
    )


def _default_code(status: int) -> str:
    return {
        400: "invalid_entry",
        401: "unauthenticated",
        403: "forbidden",
        404: "not_found",
        409: "conflict",
        413: "payload_too_large",
        422: "idempotency_key_reused",
        429: "throttled",
        503: "unavailable",
    }.get(status, "internal_error" if status >= 500 else f"http_{status}")


def _envelope(status: int, body: bytes) -> tuple[str, str, str | None, str | None]:
    try:
        data = json.loads(body) if body else None
    except ValueError:
        data = None
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):
            return (
                str(error.get("code") or _default_code(status)),
                str(error.get("message") or ""),
                error.get("parameter"),
                error.get("request_id"),
            )
        if isinstance(data.get("message"), str):
            return _default_code(status), data["message"], None, None
    text = body[:200].decode("utf-8", "replace").strip() if body else ""
    return _default_code(status), text or f"HTTP {status}", None, None
