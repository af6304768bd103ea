"""FastAPI integration (``pip install "auditline[fastapi]"``).

A dependency binds the request's context, so route code only says what happened::

    from fastapi import Depends, FastAPI
    from auditline import AsyncAuditClient
    from auditline.fastapi import AuditDependency, RequestAudit

    client = AsyncAuditClient("https://audit.example.com", api_key="alk_...")
    audit = AuditDependency(client, actor=lambda request: request.headers.get("x-user-id"))
    app = FastAPI()

    @app.put("/reports/{report_id}")
    async def publish(report_id: str, log: RequestAudit = Depends(audit)) -> dict[str, str]:
        log.log_update("REPORT", report_id, changes={"before": {"status": "draft"}, "after": {"status": "published"}})
        return {"status": "published"}

The service takes ``user_id`` from the credential the SDK holds (your service's key or token) and
``ip_address`` from the connection that reached it (your server), and refuses either in the body.
So the person acting and their address go into ``metadata``: ``{"actor": …, "client_ip": …,
"request": "PUT /reports/7"}`` (and ``request_id`` when the request has an ``X-Request-ID``).
Keys the route passes in ``metadata`` win over these.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Union

from fastapi import Request

from ._base import LogMethods, ResultCallback
from ._common import ActionLike, EntityTypeLike
from .aio import AsyncAuditClient
from .client import AuditClient

ActorResolver = Callable[[Request], Union[str, None]]
ContextResolver = Callable[[Request], Mapping[str, Any]]

__all__ = ["AuditDependency", "RequestAudit", "client_ip", "default_actor"]


class RequestAudit(LogMethods[Any]):
    """The client's ``log_*`` calls with one request's context merged into ``metadata``. Returns
    what the client returns (a ``Future`` for :class:`AuditClient`, a ``LogHandle`` for
    :class:`AsyncAuditClient`)."""

    def __init__(self, client: AuditClient | AsyncAuditClient, context: Mapping[str, Any]) -> None:
        self.client = client
        self.context: dict[str, Any] = dict(context)

    @property
    def actor(self) -> str | None:
        actor = self.context.get("actor")
        return actor if isinstance(actor, str) else None

    @property
    def client_ip(self) -> str | None:
        ip = self.context.get("client_ip")
        return ip if isinstance(ip, str) else None

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
    ) -> Any:
        merged = dict(self.context)
        if metadata:
            merged.update(metadata)
        return self.client.log(
            action, entity_type, entity_id, project_id=project_id, changes=changes, metadata=merged, on_result=on_result
        )


def default_actor(request: Request) -> str | None:
    """``request.state.audit_actor`` if your authentication set it; else the user of Starlette's
    ``AuthenticationMiddleware`` (``request.user.identity``, or its ``display_name``); else none."""
    actor = getattr(request.state, "audit_actor", None)
    if isinstance(actor, str) and actor:
        return actor
    if "user" in request.scope:
        user = request.scope["user"]
        if getattr(user, "is_authenticated", False):
            for attribute in ("identity", "display_name", "username"):
                try:
                    value = getattr(user, attribute)
                except (AttributeError, NotImplementedError):
                    continue
                if isinstance(value, str) and value:
                    return value
    return None


def client_ip(request: Request, *, trust_forwarded: bool = False) -> str | None:
    """The client's address: the connection's peer, or — only with ``trust_forwarded``, behind a
    proxy you run — the first address of ``X-Forwarded-For``."""
    if trust_forwarded:
        forwarded = request.headers.get("x-forwarded-for")
        if forwarded:
            first = forwarded.split(",")[0].strip()
            if first:
                return first
    return request.client.host if request.client else None


class AuditDependency:
    """``Depends(AuditDependency(client, ...))`` gives a route a :class:`RequestAudit`.

    ``actor``: how to name who acts (default :func:`default_actor`); ``trust_forwarded``: take the
    client IP from ``X-Forwarded-For`` (only behind your own proxy); ``context``: more fields for
    every entry of the request (e.g. a tenant of yours)."""

    def __init__(
        self,
        client: AuditClient | AsyncAuditClient,
        *,
        actor: ActorResolver | None = None,
        trust_forwarded: bool = False,
        context: ContextResolver | None = None,
    ) -> None:
        self.client = client
        self.actor = actor or default_actor
        self.trust_forwarded = trust_forwarded
        self.context = context

    def __call__(self, request: Request) -> RequestAudit:
        context: dict[str, Any] = {}
        actor = self.actor(request)
        if actor:
            context["actor"] = actor
        ip = client_ip(request, trust_forwarded=self.trust_forwarded)
        if ip:
            context["client_ip"] = ip
        context["request"] = f"{request.method} {request.url.path}"
        request_id = request.headers.get("x-request-id")
        if request_id:
            context["request_id"] = request_id
        if self.context is not None:
            context.update(self.context(request))
        return RequestAudit(self.client, context)
