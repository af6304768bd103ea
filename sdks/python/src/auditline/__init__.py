"""auditline: the Python client of the auditline audit-trail service.

>>> from auditline import AuditClient
>>> audit = AuditClient("http://127.0.0.1:8080", api_key="alk_...")      # doctest: +SKIP
>>> audit.log_update("REPORT", "report-7", changes={"before": {}, "after": {}})  # doctest: +SKIP
"""

from ._feed import Subscription
from ._types import (
    Action,
    AuditLogEntry,
    EntityType,
    ErasureNotice,
    ExportResult,
    Health,
    HealthStorage,
    Integrity,
    Page,
    Receipt,
    Stats,
    StatsPoint,
    WitnessHealth,
    FailingStream,
    StreamsHealth,
)
from ._version import __version__
from .aio import AsyncAuditClient, LogHandle
from .client import AuditClient
from .errors import (
    ApiError,
    AuditlineError,
    AuthError,
    BadRequest,
    Conflict,
    Dropped,
    IdempotencyKeyReused,
    InvalidEntry,
    NotDelivered,
    NotFound,
    PayloadTooLarge,
    QueueFull,
    RateLimited,
    Rejected,
    ServerError,
    ServiceUnavailable,
    SpoolError,
    TransportError,
)

__all__ = [
    "Action",
    "ApiError",
    "AsyncAuditClient",
    "AuditClient",
    "AuditLogEntry",
    "AuditlineError",
    "AuthError",
    "BadRequest",
    "Conflict",
    "Dropped",
    "EntityType",
    "ErasureNotice",
    "ExportResult",
    "Health",
    "HealthStorage",
    "IdempotencyKeyReused",
    "Integrity",
    "InvalidEntry",
    "LogHandle",
    "NotDelivered",
    "NotFound",
    "Page",
    "PayloadTooLarge",
    "QueueFull",
    "RateLimited",
    "Receipt",
    "Rejected",
    "ServerError",
    "ServiceUnavailable",
    "SpoolError",
    "Stats",
    "StatsPoint",
    "Subscription",
    "TransportError",
    "WitnessHealth",
    "FailingStream",
    "StreamsHealth",
    "__version__",
]
