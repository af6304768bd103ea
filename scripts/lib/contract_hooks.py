"""What docs/openapi.json cannot say, told to Schemathesis (contract_check.py loads this module).

- `next_token` (a query parameter, or a body field) is opaque: only a value the service issued is
  valid, and Schemathesis cannot make one. It is taken out of the copy of the document the run
  generates from; the Rust tests cover tokens (tampered, another tenant's, another query's).
- `start_date` after `end_date` is refused (400, naming start_date): a relation between two
  parameters that OpenAPI 3.0 cannot express. A case with both has them in order.
- An `Idempotency-Key` names one request: the same key with another body is refused (422) by
  design. A valid generated key is made unique per case, so each case is a request of its own.

Log streams (`/audit/streams`, issue 26):

- A stream's URL must resolve, when the stream is created or changed and again before each
  delivery, to public addresses only (the SSRF rules of shared/src/streams/outbound.rs): the
  document gives the URL's form, but no schema can say what a host resolves to. Offline no
  generated name resolves (a 400 naming `target.url` for every schema-valid URL), and online one
  might, and the gateway would then send the run's entries and test events to a stranger's host. So
  every generated URL of the document's form (`StreamUrl`) is pointed at a sink this module runs on
  loopback, in plain http, which the local gateway allows for a developer's own receiver; its path
  and query are kept. A Datadog target without `url` would go to the site's public intake: it gets
  the sink's URL too (an optional field of the same schema). The requests stay schema-valid, and
  streams are really made, changed, rotated, tested and deleted (up to 20 per tenant, then the
  documented 409 `too_many_streams`). Since every stream delivers to the sink, which answers at
  once, `POST …/test` (which waits for the destination: 5 s to connect, 10 s in all) takes
  milliseconds. The refusal itself (400 `target.url` for a host that does not resolve or resolves to
  a private address) is checked against the document by tests/suite/openapi.rs.
- A webhook's custom header names must be HTTP tokens and not one the delivery sets itself (Host,
  webhook-signature, …): OpenAPI 3.0 has no keyword for an object's property names (propertyNames is
  3.1), so a generated name that breaks the rule is replaced by a valid one; values are kept.
- A stream's type is fixed at creation, and only a webhook has a signing secret: a schema-valid
  `PATCH` with a target of another type than the stored stream's (400 naming `target.type`), or a
  rotation of a stream that is not a webhook (400 naming `stream_id`), depends on what was created
  before, which a schema cannot tie to the request. Those two refusals of a schema-valid request are
  accepted (filter_failure); every other refusal of one is still a mismatch.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from datetime import date, datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import schemathesis

VALID_KEY = re.compile(r"^[ -~]*[!-~][ -~]*$")

# The document's form of a stream's URL (components.schemas.StreamUrl), read when it is loaded.
STREAM_URL: re.Pattern[str] | None = None
# What a webhook's custom header name must be (shared/src/streams/destination.rs, check_headers).
HEADER_TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+\-.^_`|~]{1,256}")
AFTER_AUTHORITY = re.compile(r"[a-z]+://[^/?#]*(.*)", re.DOTALL)
RESERVED_HEADERS = {
    "host", "content-length", "content-type", "content-encoding", "transfer-encoding", "connection",
    "webhook-id", "webhook-timestamp", "webhook-signature",
}


class _Sink(BaseHTTPRequestHandler):
    """Takes every delivery at once, as a receiver would (Splunk's success answer fits them all)."""

    def _take(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        answer = json.dumps({"text": "Success", "code": 0}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    do_POST = do_PUT = do_GET = _take

    def log_message(self, format: str, *args: Any) -> None:
        pass


_sink: ThreadingHTTPServer | None = None


def _sink_origin() -> str:
    """The sink's origin, started on first use; it lives as long as the run."""
    global _sink
    if _sink is None:
        _sink = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
        _sink.daemon_threads = True
        threading.Thread(target=_sink.serve_forever, name="stream-sink", daemon=True).start()
    return f"http://127.0.0.1:{_sink.server_address[1]}"


def _to_sink(url: str) -> str:
    """The same path and query, at the sink (the fragment is never sent anyway)."""
    rest = AFTER_AUTHORITY.match(url).group(1).split("#", 1)[0]  # type: ignore[union-attr]
    return _sink_origin() + (rest if rest.startswith("/") else "/" + rest)


def _hermetic_target(target: Any) -> None:
    """Points a generated target at the sink, its header names made valid (see the module's doc)."""
    if not isinstance(target, dict):
        return
    url = target.get("url")
    if isinstance(url, str) and STREAM_URL is not None and STREAM_URL.search(url):
        target["url"] = _to_sink(url)
    if target.get("type") == "datadog" and target.get("url") is None:
        target["url"] = _sink_origin() + "/api/v2/logs"
    headers = target.get("headers")
    if target.get("type") == "webhook" and isinstance(headers, dict):
        taken = {name.lower() for name in headers if isinstance(name, str)}
        renamed: dict[str, Any] = {}
        for i, (name, value) in enumerate(headers.items()):
            if not (HEADER_TOKEN.fullmatch(name) and name.lower() not in RESERVED_HEADERS):
                name = f"x-generated-{i}"
                while name in taken:
                    name += "-"
                taken.add(name)
            renamed[name] = value
        target["headers"] = renamed


STREAM_BODIES = {("POST", "/audit/streams"), ("PATCH", "/audit/streams/{stream_id}")}


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
    global STREAM_URL
    stripped = _without_next_token(raw_schema)
    raw_schema.clear()
    raw_schema.update(stripped)
    STREAM_URL = re.compile(raw_schema["components"]["schemas"]["StreamUrl"]["pattern"])


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
    if (case.method.upper(), case.path) in STREAM_BODIES and isinstance(case.body, dict):
        _hermetic_target(case.body.get("target"))


# Refusals of a schema-valid request that depend on the stream stored before (see the module's doc).
STATEFUL_REFUSALS = {
    ("PATCH", "/audit/streams/{stream_id}"): ("target.type", "cannot become"),
    ("POST", "/audit/streams/{stream_id}/secret"): ("stream_id", "only a webhook stream"),
}


@schemathesis.hook
def filter_failure(ctx: Any, failure: Any, case: Any, response: Any) -> bool:
    expected = STATEFUL_REFUSALS.get((case.method.upper(), case.path))
    if expected is None or type(failure).__name__ != "RejectedPositiveData" or response.status_code != 400:
        return True
    try:
        error = json.loads(response.content)["error"]
    except (ValueError, KeyError, TypeError):
        return True
    parameter, reason = expected
    return not (error.get("parameter") == parameter and reason in str(error.get("message")))
