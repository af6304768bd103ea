"""The FastAPI dependency: routes say what happened; the actor and client IP go into metadata."""

# No `from __future__ import annotations` here: FastAPI reads the routes' annotations at run time,
# and these routes' dependencies are local names.
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.testclient import TestClient

from auditline import AsyncAuditClient, AuditClient, Receipt
from auditline.fastapi import AuditDependency, RequestAudit
from gateway import Gateway


def test_a_sync_client_behind_the_dependency(gateway: Gateway, marker: str) -> None:
    client = AuditClient(gateway.url, api_key=gateway.api_key, linger=0.02, flush_at_exit=False)
    audit = AuditDependency(client, actor=lambda request: request.headers.get("x-user-id"), trust_forwarded=True)
    app = FastAPI()

    @app.put("/reports/{report_id}")
    def publish(report_id: str, log: Annotated[RequestAudit, Depends(audit)]) -> dict[str, Any]:
        receipt: Receipt = log.log_update(
            "REPORT", report_id, changes={"before": {"status": "draft"}, "after": {"status": "published"}}
        ).result(timeout=10)
        return {"id": receipt.id, "actor": log.actor, "ip": log.client_ip}

    with TestClient(app) as http:
        answer = http.put(
            f"/reports/{marker}",
            headers={"x-user-id": "alice", "x-forwarded-for": "203.0.113.9, 10.0.0.1", "x-request-id": "req-1"},
        ).json()
    client.close()
    assert answer["actor"] == "alice" and answer["ip"] == "203.0.113.9"
    entry = AuditClient(gateway.url, api_key=gateway.api_key, flush_at_exit=False).get_log(answer["id"])
    assert entry.metadata == {
        "actor": "alice",
        "client_ip": "203.0.113.9",
        "request": f"PUT /reports/{marker}",
        "request_id": "req-1",
    }
    assert entry.user_id == "developer"  # the SDK's credential: the service takes it from there


def test_an_async_client_in_the_apps_lifespan(gateway: Gateway, marker: str) -> None:
    state: dict[str, AsyncAuditClient] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncAuditClient(gateway.url, api_key=gateway.api_key, linger=0.02) as client:
            state["client"] = client
            yield

    app = FastAPI(lifespan=lifespan)

    def audit(request: Request) -> RequestAudit:
        request.state.audit_actor = "svc-bob"  # e.g. set by your authentication
        return AuditDependency(state["client"])(request)

    @app.delete("/files/{file_id}")
    async def remove(file_id: str, log: Annotated[RequestAudit, Depends(audit)]) -> dict[str, str]:
        receipt = await log.log_delete("FILE", file_id, project_id=marker, metadata={"reason": "cleanup"})
        return {"id": receipt.id}

    with TestClient(app) as http:
        entry_id = http.delete(f"/files/{marker}").json()["id"]
    entry = AuditClient(gateway.url, api_key=gateway.api_key, flush_at_exit=False).get_log(entry_id)
    assert entry.metadata == {
        "actor": "svc-bob",
        "client_ip": "testclient",
        "request": f"DELETE /files/{marker}",
        "reason": "cleanup",
    }
