"""The SDK's requests and types against docs/openapi.json: every request it sends validates
against the operation's parameters and body schema, every JSON answer it reads against the
response schema, and the dataclasses have exactly the schemas' properties."""

from __future__ import annotations

import dataclasses
import json
import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from auditline import (
    Action,
    AuditClient,
    AuditLogEntry,
    EntityType,
    Health,
    HealthStorage,
    Integrity,
    Page,
    Stats,
    StatsPoint,
    WitnessHealth,
)
from auditline._common import encode_entry
from auditline._pipeline import Item, Pipeline
from auditline._types import WRITABLE_ENTITY_TYPES
from gateway import REPO, Gateway

OPENAPI: dict[str, Any] = json.loads((REPO / "docs" / "openapi.json").read_text())


def schema(node: Any) -> Any:
    """An OpenAPI 3.0 schema as plain JSON Schema: references inlined, ``nullable`` as a type."""
    if isinstance(node, list):
        return [schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        return schema(OPENAPI["components"]["schemas"][name])
    out = {k: schema(v) for k, v in node.items() if k not in ("nullable", "description", "example")}
    if node.get("nullable"):
        if "type" in out:
            out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out


def component(name: str) -> Any:
    return schema(OPENAPI["components"]["schemas"][name])


def validate(instance: Any, json_schema: Any) -> None:
    jsonschema.Draft202012Validator(json_schema).validate(instance)


def fields(cls: type) -> dict[str, dataclasses.Field[Any]]:
    return {f.name.rstrip("_"): f for f in dataclasses.fields(cls)}


@pytest.mark.parametrize(
    ("cls", "json_schema"),
    [
        (AuditLogEntry, component("AuditLogEntry")),
        (Integrity, component("Integrity")),
        (Page, component("Page")),
        (Stats, component("Stats")),
        (StatsPoint, component("Stats")["properties"]["series"]["items"]),
        (Health, component("Health")),
        (HealthStorage, component("Health")["properties"]["storage"]),
        (WitnessHealth, component("Health")["properties"]["witnesses"]["items"]),
    ],
    ids=lambda v: getattr(v, "__name__", ""),
)
def test_dataclasses_have_exactly_the_schemas_properties(cls: type, json_schema: Any) -> None:
    declared = fields(cls)
    assert set(declared) == set(json_schema["properties"])
    # What the schema requires has no default; what it may leave out has one.
    required = set(json_schema.get("required", []))
    optional = {n for n, f in declared.items() if f.default is not dataclasses.MISSING}
    assert not optional & required, f"{cls.__name__}: required fields with defaults: {optional & required}"
    nullable_or_optional = {
        n for n, p in json_schema["properties"].items() if n not in required or "null" in p.get("type", [])
    }
    assert optional <= nullable_or_optional


def test_the_enums_are_the_contracts() -> None:
    new_entry = component("NewEntry")["properties"]
    assert [a.value for a in Action] == new_entry["action"]["enum"]
    assert WRITABLE_ENTITY_TYPES == set(new_entry["entity_type"]["enum"])
    assert [t.value for t in EntityType] == component("AuditLogEntry")["properties"]["entity_type"]["enum"]


def test_batch_bodies_validate_against_the_ingest_schema() -> None:
    body_schema = schema(OPENAPI["paths"]["/audit/logs"]["post"]["requestBody"]["content"]["application/json"]["schema"])
    pipe = Pipeline(max_batch=100, max_bytes=1 << 20, linger=1, max_queue=1000, spool=None)
    calls: list[tuple[Any, Any, str, str | None, dict[str, Any] | None, dict[str, Any] | None]] = [
        ("CREATE", "ENTITY", "e-1", None, None, None),
        ("UPDATE", EntityType.REPORT, "r-1", "p-1", {"before": {"a": 1}, "after": {"a": 2}}, None),
        ("LINK", "RELATIONSHIP", "x" * 256, "p" * 256, None, {"target_id": "e-2", "target_type": "ENTITY"}),
        (Action.VIEW, "schedule", "s-1", None, {}, {"nested": [1, "two", None, {"three": 3.5}]}),
    ]
    for call in calls:
        pipe.add(Item(encode_entry(*call), None, None), 0.0)
    batch = pipe.take(0.0, force=True)
    assert batch is not None
    validate(json.loads(batch.request_body()), body_schema)


class Recorder(httpx.HTTPTransport):
    def __init__(self) -> None:
        super().__init__()
        self.exchanges: list[tuple[httpx.Request, httpx.Response]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        response.read()
        self.exchanges.append((request, response))
        return response


def operation(method: str, path: str) -> tuple[str, dict[str, Any]]:
    for template, item in OPENAPI["paths"].items():
        pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
        if re.match(pattern, path) and method.lower() in item:
            return template, item[method.lower()]
    raise AssertionError(f"{method} {path} is not in the contract")


def test_what_the_client_sends_and_reads_validates_against_the_contract(
    gateway: Gateway, marker: str, tmp_path: Path
) -> None:
    recorder = Recorder()
    with AuditClient(gateway.url, api_key=gateway.api_key, transport=recorder, linger=0.02, flush_at_exit=False) as audit:
        for action in Action:
            audit.log(action, "FILE", f"{marker}-{action.value}", project_id=marker, metadata={"m": marker})
        assert audit.flush(timeout=10)  # a 201
        audit.log_create("FILE", "bad\u0001")  # a 207 with one rejected item
        assert audit.flush(timeout=10)
        entries = list(audit.get_logs_by_project(marker, page_size=2))
        list(audit.get_logs_by_entity(entries[0].entity_id, action="VIEW", start_date="2020-01-01"))
        list(audit.get_logs(entity_type="FILE", user_id="developer", limit=3, offset=1))
        audit.get_log(entries[0].id)
        with pytest.raises(Exception):
            audit.get_log(str(uuid.uuid4()))
        with pytest.raises(Exception):
            audit.get_log("not-a-uuid")
        audit.get_stats(start_date="2020-01-01", bucket="hour")
        audit.get_health()
        audit.export("csv", tmp_path / "x.csv", project_id=marker, start_date="2020-01-01T00:00:00Z")

    checked = 0
    for request, response in recorder.exchanges:
        template, op = operation(request.method, request.url.path)
        declared = {p["name"]: p for p in op.get("parameters", []) if p["in"] == "query"}
        for name, value in request.url.params.multi_items():
            assert name in declared, f"{request.method} {template}: undeclared parameter {name}"
            p_schema = schema(declared[name]["schema"])
            typed: Any = int(value) if p_schema.get("type") == "integer" else value
            validate(typed, p_schema)
        if request.method == "POST":
            body_schema = op["requestBody"]["content"]["application/json"]["schema"]
            validate(json.loads(request.content), schema(body_schema))
            key = request.headers["idempotency-key"]
            assert 0 < len(key) <= 128 and re.fullmatch(r"[0-9a-f]{32}", key)
        answers = op["responses"][str(response.status_code)]
        content_type = response.headers.get("content-type", "").split(";")[0]
        if content_type == "application/json":
            validate(response.json(), schema(answers["content"]["application/json"]["schema"]))
        else:
            assert content_type in answers["content"], (template, content_type)
        checked += 1
    statuses = {r.status_code for _, r in recorder.exchanges}
    assert {200, 201, 207, 400, 404} <= statuses, statuses
    assert checked >= 12


def test_parsed_entries_keep_every_field(gateway: Gateway, marker: str) -> None:
    with AuditClient(gateway.url, api_key=gateway.api_key, flush_at_exit=False) as audit:
        receipt = audit.log_update("REPORT", marker, changes={"before": {"s": 1}, "after": {"s": 2}}).result(10)
    raw = httpx.get(f"{gateway.url}/audit/logs/{receipt.id}", headers=gateway.headers()).json()
    validate(raw, component("AuditLogEntry"))
    parsed = dataclasses.asdict(AuditLogEntry.from_json(raw))
    parsed["integrity"] = {k: v for k, v in parsed["integrity"].items() if v is not None}
    assert parsed == raw
    assert receipt.entry is not None and dataclasses.asdict(receipt.entry)["integrity"]["leaf_hash"] == raw["integrity"]["leaf_hash"]
