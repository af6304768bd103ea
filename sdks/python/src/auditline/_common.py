"""Pieces both clients share: entry encoding and local checks, credentials, backoff, settings."""

from __future__ import annotations

import inspect
import json
import random
import threading
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Literal, Mapping, Union

from ._types import ACTIONS, WRITABLE_ENTITY_TYPES, Action, EntityType
from ._version import __version__
from .errors import InvalidEntry

#: Largest request body the service takes (1 MiB).
MAX_BODY_BYTES = 1024 * 1024
#: Most entries in one request.
MAX_BATCH = 100
#: Longest entity or project id the service takes.
MAX_ID_LENGTH = 256

USER_AGENT = f"auditline-python/{__version__}"

OnFull = Literal["block", "raise", "drop_oldest"]
ActionLike = Union[Action, str]
EntityTypeLike = Union[EntityType, str]
TokenProvider = Callable[[], Union[str, Awaitable[str]]]

_encoder = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False)


def action_name(action: ActionLike) -> str:
    name = action.value if isinstance(action, Action) else action
    if name not in ACTIONS:
        if isinstance(name, str) and name.upper() in ACTIONS:
            return name.upper()
        raise InvalidEntry(f"action must be one of {sorted(ACTIONS)}, not {action!r}")
    return name


def entity_type_name(entity_type: EntityTypeLike) -> str:
    name = entity_type.value if isinstance(entity_type, EntityType) else entity_type
    if name not in WRITABLE_ENTITY_TYPES:
        if isinstance(name, str) and name.upper() in WRITABLE_ENTITY_TYPES:
            return name.upper()
        raise InvalidEntry(f"entity_type must be one of {sorted(WRITABLE_ENTITY_TYPES)}, not {entity_type!r}")
    return name


def _identifier(field: str, value: object, *, optional: bool) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str):
        raise InvalidEntry(f"{field} must be a string, not {type(value).__name__}")
    if not 1 <= len(value) <= MAX_ID_LENGTH:
        raise InvalidEntry(f"{field} must have 1 to {MAX_ID_LENGTH} characters")


def _object(field: str, value: object) -> dict[str, Any]:
    if isinstance(value, Mapping):
        return dict(value)
    raise InvalidEntry(f"{field} must be a JSON object (a dict), not {type(value).__name__}")


def encode_entry(
    action: ActionLike,
    entity_type: EntityTypeLike,
    entity_id: str,
    project_id: str | None,
    changes: Mapping[str, Any] | None,
    metadata: Mapping[str, Any] | None,
) -> bytes:
    """The entry as the JSON the service takes (``NewEntry``), checked as far as is cheap.

    Encoding at call time also snapshots ``changes`` and ``metadata``: mutating them afterwards
    does not change what is sent.
    """
    entry: dict[str, Any] = {
        "action": action_name(action),
        "entity_type": entity_type_name(entity_type),
        "entity_id": entity_id,
    }
    _identifier("entity_id", entity_id, optional=False)
    if project_id is not None:
        _identifier("project_id", project_id, optional=True)
        entry["project_id"] = project_id
    if changes is not None:
        entry["changes"] = changes if type(changes) is dict else _object("changes", changes)
    if metadata is not None:
        entry["metadata"] = metadata if type(metadata) is dict else _object("metadata", metadata)
    try:
        payload = _encoder.encode(entry).encode("utf-8")
    except (TypeError, ValueError) as e:
        raise InvalidEntry(f"the entry is not JSON-serialisable: {e}") from e
    if len(payload) + 2 > MAX_BODY_BYTES:
        raise InvalidEntry(f"the entry is {len(payload)} bytes of JSON; a request takes at most {MAX_BODY_BYTES}")
    return payload


def batch_body(payloads: list[bytes]) -> bytes:
    """A batch request body: the payloads as one JSON array. Deterministic: the same payloads give
    the same bytes, which the same ``Idempotency-Key`` needs on every retry."""
    return b"[" + b",".join(payloads) + b"]"


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter: attempt ``n`` waits a random time in
    ``[0, min(cap, base * 2**n)]``, and never less than the server's ``Retry-After``."""

    base: float = 0.2
    cap: float = 30.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        ceiling = min(self.cap, self.base * (2 ** min(attempt, 30)))
        wait = random.uniform(0, ceiling)
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.cap))
        return wait


class Credentials:
    """One of an API key, a token, or a token provider (called again after a refusal)."""

    def __init__(
        self, api_key: str | None, token: str | None, token_provider: TokenProvider | None
    ) -> None:
        given = [x is not None for x in (api_key, token, token_provider)]
        if sum(given) != 1:
            raise ValueError("pass exactly one of api_key=, token= or token_provider=")
        self.api_key = api_key
        self._token = token
        self.provider = token_provider
        self._lock = threading.Lock()
        self._generation = 0

    @property
    def refreshable(self) -> bool:
        return self.provider is not None

    @property
    def generation(self) -> int:
        """Bumped at each refresh: a caller that saw a refusal refreshes only if nobody did since."""
        return self._generation

    def cached_headers(self) -> dict[str, str] | None:
        """The headers, or ``None`` when a provider must be asked first."""
        if self.api_key is not None:
            return {"X-API-Key": self.api_key}
        if self._token is not None:
            return {"Authorization": f"Bearer {self._token}"}
        return None

    def set_token(self, token: str) -> None:
        if not isinstance(token, str) or not token:
            raise ValueError("token_provider must return a non-empty string")
        with self._lock:
            self._token = token
            self._generation += 1

    def invalidate(self, generation: int) -> bool:
        """Forgets the token after a refusal seen at ``generation``; ``False`` if not refreshable."""
        if self.provider is None:
            return False
        with self._lock:
            if self._generation == generation:
                self._token = None
        return True

    def headers_sync(self) -> dict[str, str]:
        headers = self.cached_headers()
        if headers is not None:
            return headers
        assert self.provider is not None
        token = self.provider()
        if inspect.isawaitable(token):
            raise TypeError("AuditClient's token_provider must return a string; use AsyncAuditClient for coroutines")
        self.set_token(token)
        return {"Authorization": f"Bearer {token}"}

    async def headers_async(self) -> dict[str, str]:
        headers = self.cached_headers()
        if headers is not None:
            return headers
        assert self.provider is not None
        token = self.provider()
        if inspect.isawaitable(token):
            token = await token
        self.set_token(token)
        return {"Authorization": f"Bearer {token}"}


def websocket_url(http_url: str) -> str:
    """The live feed's URL on the same host: ``http(s)://host[/stage]`` -> ``ws(s)://host[/stage]/ws``."""
    base = http_url.rstrip("/")
    if base.startswith("https://"):
        base = "wss://" + base[len("https://") :]
    elif base.startswith("http://"):
        base = "ws://" + base[len("http://") :]
    return base + "/ws"


def log_entry_repr(payload: bytes) -> dict[str, Any]:
    """The entry back from its JSON, for errors and callbacks."""
    value = json.loads(payload)
    return value if isinstance(value, dict) else {}
