"""Typed results: one dataclass per schema of ``docs/openapi.json`` the SDK returns.

Parsing is tolerant of fields a newer server may add (they are ignored), strict about the ones the
contract requires (a missing one is a :class:`ValueError`, never a silent ``None``).
"""

from __future__ import annotations

import datetime as _dt
import enum
from dataclasses import dataclass, field
from typing import Any, Mapping


class Action(str, enum.Enum):
    """What was done (the seed's ``AuditAction``)."""

    CREATE = "CREATE"
    UPDATE = "UPDATE"
    DELETE = "DELETE"
    LINK = "LINK"
    UNLINK = "UNLINK"
    VIEW = "VIEW"

    def __str__(self) -> str:
        return self.value


class EntityType(str, enum.Enum):
    """What it was done to (the seed's ``EntityType``, plus the service's own records)."""

    PROJECT = "PROJECT"
    ENTITY = "ENTITY"
    RELATIONSHIP = "RELATIONSHIP"
    FILE = "FILE"
    REPORT = "REPORT"
    TEMPLATE = "TEMPLATE"
    SCHEDULE = "SCHEDULE"
    #: The service's own records (erasures, settings, legal holds): readable, never writable.
    AUDIT_ENTRY = "AUDIT_ENTRY"
    AUDIT_SETTINGS = "AUDIT_SETTINGS"
    LEGAL_HOLD = "LEGAL_HOLD"
    LOG_STREAM = "LOG_STREAM"

    def __str__(self) -> str:
        return self.value


#: Entity types a client may write (the others are the service's own records).
WRITABLE_ENTITY_TYPES = frozenset(
    t.value
    for t in (
        EntityType.PROJECT,
        EntityType.ENTITY,
        EntityType.RELATIONSHIP,
        EntityType.FILE,
        EntityType.REPORT,
        EntityType.TEMPLATE,
        EntityType.SCHEDULE,
    )
)
ACTIONS = frozenset(a.value for a in Action)


def parse_timestamp(text: str) -> _dt.datetime:
    """An API timestamp (``2026-12-06T13:59:46.002Z``) as an aware UTC datetime."""
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    return _dt.datetime.fromisoformat(text).astimezone(_dt.timezone.utc)


def format_timestamp(value: _dt.datetime | _dt.date | str) -> str:
    """A query parameter for ``start_date`` / ``end_date``: strings pass as given; datetimes
    become ISO 8601 in UTC with milliseconds (naive ones are taken as UTC); dates stay dates."""
    if isinstance(value, str):
        return value
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=_dt.timezone.utc)
        value = value.astimezone(_dt.timezone.utc)
        return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    return value.isoformat()


def _req(data: Mapping[str, Any], name: str) -> Any:
    try:
        return data[name]
    except KeyError:
        raise ValueError(f"the response lacks the required field {name!r}") from None


@dataclass(frozen=True)
class Integrity:
    """What proves an entry (schema ``Integrity``): keep ``leaf_hash`` as a receipt."""

    format: str
    leaf_hash: str
    seed: str | None = None
    salts: dict[str, str] | None = None
    erased: dict[str, str] | None = None
    erased_by: dict[str, str] | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Integrity:
        return cls(
            format=_req(data, "format"),
            leaf_hash=_req(data, "leaf_hash"),
            seed=data.get("seed"),
            salts=data.get("salts"),
            erased=data.get("erased"),
            erased_by=data.get("erased_by"),
        )


@dataclass(frozen=True)
class AuditLogEntry:
    """One stored entry (schema ``AuditLogEntry``). ``action`` and ``entity_type`` are the
    server's strings (compare with :class:`Action` / :class:`EntityType`, which are ``str``)."""

    id: str
    timestamp: str
    action: str
    entity_type: str
    entity_id: str
    project_id: str | None
    user_id: str | None
    changes: dict[str, Any] | None
    ip_address: str | None
    metadata: dict[str, Any] | None
    tenant_id: str
    expires_at: int
    integrity: Integrity

    @property
    def time(self) -> _dt.datetime:
        """``timestamp`` as an aware UTC datetime."""
        return parse_timestamp(self.timestamp)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AuditLogEntry:
        return cls(
            id=_req(data, "id"),
            timestamp=_req(data, "timestamp"),
            action=_req(data, "action"),
            entity_type=_req(data, "entity_type"),
            entity_id=_req(data, "entity_id"),
            project_id=data.get("project_id"),
            user_id=data.get("user_id"),
            changes=data.get("changes"),
            ip_address=data.get("ip_address"),
            metadata=data.get("metadata"),
            tenant_id=_req(data, "tenant_id"),
            expires_at=_req(data, "expires_at"),
            integrity=Integrity.from_json(_req(data, "integrity")),
        )


@dataclass(frozen=True)
class Page:
    """One page of a list route (schema ``Page``); pass ``next_token`` back for the next."""

    entries: list[AuditLogEntry]
    count: int
    limit: int
    offset: int
    next_token: str | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Page:
        return cls(
            entries=[AuditLogEntry.from_json(e) for e in _req(data, "entries")],
            count=_req(data, "count"),
            limit=_req(data, "limit"),
            offset=_req(data, "offset"),
            next_token=data.get("next_token"),
        )


@dataclass(frozen=True)
class StatsPoint:
    """Counts of one bucket of a :class:`Stats` series."""

    start: str
    total: int
    by_action: dict[str, int]
    by_entity_type: dict[str, int]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StatsPoint:
        return cls(
            start=_req(data, "start"),
            total=_req(data, "total"),
            by_action=dict(_req(data, "by_action")),
            by_entity_type=dict(_req(data, "by_entity_type")),
        )


@dataclass(frozen=True)
class Stats:
    """Totals over whole UTC hours (schema ``Stats``). ``from_`` is the schema's ``from``."""

    total_entries: int
    by_action: dict[str, int]
    by_entity_type: dict[str, int]
    from_: str | None
    until: str | None
    bucket: str | None = None
    series: list[StatsPoint] | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Stats:
        series = data.get("series")
        return cls(
            total_entries=_req(data, "total_entries"),
            by_action=dict(_req(data, "by_action")),
            by_entity_type=dict(_req(data, "by_entity_type")),
            from_=data.get("from"),
            until=data.get("until"),
            bucket=data.get("bucket"),
            series=None if series is None else [StatsPoint.from_json(p) for p in series],
        )


@dataclass(frozen=True)
class HealthStorage:
    backend: str
    reachable: bool
    latency_ms: int
    error: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> HealthStorage:
        return cls(
            backend=_req(data, "backend"),
            reachable=_req(data, "reachable"),
            latency_ms=_req(data, "latency_ms"),
            error=data.get("error"),
        )


@dataclass(frozen=True)
class WitnessHealth:
    witness: str
    state: str
    last_success: str | None = None
    last_failure: str | None = None
    last_error: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WitnessHealth:
        return cls(
            witness=_req(data, "witness"),
            state=_req(data, "state"),
            last_success=data.get("last_success"),
            last_failure=data.get("last_failure"),
            last_error=data.get("last_error"),
        )


@dataclass(frozen=True)
class FailingStream:
    """A log stream of the caller's tenant that gave up on a delivery (``Health.log_streams``)."""

    id: str
    name: str
    since: str
    reason: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FailingStream:
        return cls(id=_req(data, "id"), name=_req(data, "name"), since=_req(data, "since"), reason=_req(data, "reason"))


@dataclass(frozen=True)
class StreamsHealth:
    """The caller's tenant's log streams: how many, and which are failing."""

    streams: int
    failing: list[FailingStream]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StreamsHealth:
        return cls(streams=_req(data, "streams"), failing=[FailingStream.from_json(f) for f in _req(data, "failing")])


@dataclass(frozen=True)
class Health:
    """``GET /audit/health`` (schema ``Health``): only ``status`` for callers without
    ``audit:read``; a 503 (degraded) is returned as a ``Health`` too, not raised."""

    status: str
    enabled: bool | None = None
    retention_days: int | None = None
    listeners: int | None = None
    storage: HealthStorage | None = None
    version: str | None = None
    auth_methods: list[str] | None = None
    witnesses: list[WitnessHealth] | None = None
    log_streams: StreamsHealth | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Health:
        storage = data.get("storage")
        witnesses = data.get("witnesses")
        log_streams = data.get("log_streams")
        return cls(
            status=_req(data, "status"),
            enabled=data.get("enabled"),
            retention_days=data.get("retention_days"),
            listeners=data.get("listeners"),
            storage=None if storage is None else HealthStorage.from_json(storage),
            version=data.get("version"),
            auth_methods=data.get("auth_methods"),
            witnesses=None if witnesses is None else [WitnessHealth.from_json(w) for w in witnesses],
            log_streams=None if log_streams is None else StreamsHealth.from_json(log_streams),
        )


@dataclass(frozen=True)
class Receipt:
    """What a logged entry resolves to once stored: its id, time and leaf hash.

    ``timestamp`` and ``leaf_hash`` are ``None`` only when the server answered from a compact
    idempotency record (a replay of a response over 300 KB keeps each entry's id only); ``entry``
    is the whole stored entry when the answer carried it (parsed when first asked for).
    """

    id: str
    timestamp: str | None
    leaf_hash: str | None
    #: The answer came from the server's idempotency record (a retry of a request already done).
    replayed: bool = False
    _raw: Mapping[str, Any] | None = field(default=None, repr=False, compare=False)

    @property
    def entry(self) -> AuditLogEntry | None:
        """The stored entry as the ingest answer gave it (``None`` after a compact replay)."""
        if self._raw is None:
            return None
        try:
            return AuditLogEntry.from_json(self._raw)
        except (ValueError, KeyError, TypeError):
            return None

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, replayed: bool = False) -> Receipt:
        integrity = data.get("integrity")
        leaf = integrity.get("leaf_hash") if isinstance(integrity, dict) else None
        return cls(_req(data, "id"), data.get("timestamp"), leaf, replayed, data)


@dataclass(frozen=True)
class ErasureNotice:
    """Fields were erased from ``entries`` by the erasure record ``record``: drop or blank your
    copies. From ``{"type": "erasure"}`` messages, and from erasure records read as entries."""

    record: str
    entries: list[str]
    fields: list[str]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ErasureNotice:
        return cls(record=_req(data, "record"), entries=list(_req(data, "entries")), fields=list(_req(data, "fields")))

    @classmethod
    def from_record(cls, entry: AuditLogEntry) -> ErasureNotice | None:
        """The notice an erasure record (``UPDATE AUDIT_ENTRY`` with ``changes.erased``) carries."""
        if entry.entity_type != EntityType.AUDIT_ENTRY.value or entry.action != Action.UPDATE.value:
            return None
        erased = (entry.changes or {}).get("erased")
        if not isinstance(erased, dict):
            return None
        entries, fields = erased.get("entries"), erased.get("fields")
        if not isinstance(entries, list) or not isinstance(fields, list):
            return None
        return cls(record=entry.id, entries=[str(e) for e in entries], fields=[str(f) for f in fields])


@dataclass(frozen=True)
class ExportResult:
    """What :meth:`export` wrote."""

    path: str
    format: str
    entries: int
    pages: int
    bytes: int
