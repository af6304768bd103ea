"""What docs/openapi.json cannot say, told to Schemathesis (contract_check.py loads this module).

- `next_token` (a query parameter, or a body field) is opaque: only a value the service issued is
  valid, and Schemathesis cannot make one. It is taken out of the copy of the document the run
  generates from; the Rust tests cover tokens (tampered, another tenant's, another query's).
- `start_date` after `end_date` is refused (400, naming start_date): a relation between two
  parameters that OpenAPI 3.0 cannot express. A case with both has them in order.
- An `Idempotency-Key` names one request: the same key with another body is refused (422) by
  design. A valid generated key is made unique per case, so each case is a request of its own.
"""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime, timezone
from typing import Any

import schemathesis

VALID_KEY = re.compile(r"^[ -~]*[!-~][ -~]*$")


def _without_next_token(node: Any) -> Any:
    if isinstance(node, list):
        kept = [
            item for item in node
            if not (isinstance(item, dict) and item.get("name") == "next_token" and "in" in item)
            and not (isinstance(item, dict) and item.get("$ref", "").endswith("/SweepRequest"))
        ]
        return [_without_next_token(item) for item in kept]
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "properties" and isinstance(value, dict):
                value = {k: v for k, v in value.items() if k != "next_token"}
            out[key] = _without_next_token(value)
        return out
    return node


@schemathesis.hook
def before_load_schema(ctx: Any, raw_schema: dict[str, Any]) -> None:
    stripped = _without_next_token(raw_schema)
    raw_schema.clear()
    raw_schema.update(stripped)


def _instant(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            return datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
        t = datetime.fromisoformat(value)
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


@schemathesis.hook
def before_call(ctx: Any, case: Any, **kwargs: Any) -> None:
    query = case.query
    if isinstance(query, dict):
        start, end = _instant(query.get("start_date")), _instant(query.get("end_date"))
        if start and end and start > end:
            query["start_date"], query["end_date"] = query["end_date"], query["start_date"]
    headers = case.headers
    key = (headers or {}).get("Idempotency-Key")
    if isinstance(key, str) and 0 < len(key) <= 128 and VALID_KEY.match(key):
        headers["Idempotency-Key"] = str(uuid.uuid4())
