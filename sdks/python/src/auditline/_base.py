"""What both clients share: the seed's ``log_*`` calls, settings and their checks (the calls' requests
and answers are in ``_calls``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Generic, Mapping, TypeVar, Union

from ._common import (
    MAX_BATCH,
    MAX_BODY_BYTES,
    ActionLike,
    Backoff,
    EntityTypeLike,
    OnFull,
)
from ._types import Receipt
from .errors import AuditlineError

H = TypeVar("H")

#: ``on_result=``: called once with the entry's Receipt, or with the error that settled it.
ResultCallback = Callable[[Union[Receipt, AuditlineError]], Any]


@dataclass(frozen=True)
class Settings:
    max_batch: int
    max_batch_bytes: int
    linger: float
    max_queue: int
    on_full: OnFull
    block_timeout: float | None
    max_in_flight: int
    max_attempts: int
    backoff: Backoff
    spool_dir: str | None
    spool_fsync: bool


def make_settings(
    *,
    max_batch: int,
    max_batch_bytes: int,
    linger: float,
    max_queue: int,
    on_full: OnFull,
    block_timeout: float | None,
    max_in_flight: int,
    max_attempts: int,
    backoff_base: float,
    backoff_max: float,
    spool_dir: str | os.PathLike[str] | None,
    spool_fsync: bool,
) -> Settings:
    if not 1 <= max_batch <= MAX_BATCH:
        raise ValueError(f"max_batch must be 1 to {MAX_BATCH}")
    if not 2 <= max_batch_bytes <= MAX_BODY_BYTES:
        raise ValueError(f"max_batch_bytes must be at most {MAX_BODY_BYTES} (the service's limit)")
    if linger < 0:
        raise ValueError("linger must be >= 0 seconds")
    if max_queue < 1:
        raise ValueError("max_queue must be >= 1")
    if on_full not in ("block", "raise", "drop_oldest"):
        raise ValueError("on_full must be 'block', 'raise' or 'drop_oldest'")
    if on_full == "drop_oldest" and spool_dir is not None:
        raise ValueError("on_full='drop_oldest' discards entries; it cannot be combined with a spool")
    if max_in_flight < 1:
        raise ValueError("max_in_flight must be >= 1")
    if max_attempts < 1:
        raise ValueError("max_attempts must be >= 1")
    return Settings(
        max_batch=max_batch,
        max_batch_bytes=max_batch_bytes,
        linger=linger,
        max_queue=max_queue,
        on_full=on_full,
        block_timeout=block_timeout,
        max_in_flight=max_in_flight,
        max_attempts=max_attempts,
        backoff=Backoff(backoff_base, backoff_max),
        spool_dir=None if spool_dir is None else os.fspath(spool_dir),
        spool_fsync=spool_fsync,
    )


class LogMethods(Generic[H]):
    """The seed's ``AuditLogger`` calls. Each queues one entry and returns at once a handle that
    resolves to its :class:`Receipt` (or fails with :class:`~auditline.errors.Rejected`)."""

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
    ) -> H:
        raise NotImplementedError

    def log_create(
        self,
        entity_type: EntityTypeLike,
        entity_id: str,
        *,
        project_id: str | None = None,
        changes: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        on_result: ResultCallback | None = None,
    ) -> H:
        return self.log(
            "CREATE", entity_type, entity_id, project_id=project_id, changes=changes, metadata=metadata,
            on_result=on_result,
        )

    def log_update(
        self,
        entity_type: EntityTypeLike,
        entity_id: str,
        *,
        project_id: str | None = None,
        changes: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        on_result: ResultCallback | None = None,
    ) -> H:
        return self.log(
            "UPDATE", entity_type, entity_id, project_id=project_id, changes=changes, metadata=metadata,
            on_result=on_result,
        )

    def log_delete(
        self,
        entity_type: EntityTypeLike,
        entity_id: str,
        *,
        project_id: str | None = None,
        changes: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        on_result: ResultCallback | None = None,
    ) -> H:
        return self.log(
            "DELETE", entity_type, entity_id, project_id=project_id, changes=changes, metadata=metadata,
            on_result=on_result,
        )

    def log_link(
        self,
        entity_type: EntityTypeLike,
        entity_id: str,
        *,
        project_id: str | None = None,
        changes: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        on_result: ResultCallback | None = None,
    ) -> H:
        """A link from ``entity_id`` to another: name the other end in ``metadata``
        (``{"target_id": …, "target_type": …}``, as the viewer's entity graph reads it)."""
        return self.log(
            "LINK", entity_type, entity_id, project_id=project_id, changes=changes, metadata=metadata,
            on_result=on_result,
        )

    def log_unlink(
        self,
        entity_type: EntityTypeLike,
        entity_id: str,
        *,
        project_id: str | None = None,
        changes: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        on_result: ResultCallback | None = None,
    ) -> H:
        return self.log(
            "UNLINK", entity_type, entity_id, project_id=project_id, changes=changes, metadata=metadata,
            on_result=on_result,
        )

    def log_view(
        self,
        entity_type: EntityTypeLike,
        entity_id: str,
        *,
        project_id: str | None = None,
        changes: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        on_result: ResultCallback | None = None,
    ) -> H:
        return self.log(
            "VIEW", entity_type, entity_id, project_id=project_id, changes=changes, metadata=metadata,
            on_result=on_result,
        )


def feed_backoff(settings: Settings) -> Backoff:
    return Backoff(min(settings.backoff.base, 0.5), min(settings.backoff.cap, 10.0))
