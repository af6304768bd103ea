"""Benchmarks of the Python SDK against the local gateway (in memory). Prints a Markdown table.

    .tools/sdk-python/bin/python sdks/python/bench.py [GATEWAY_BINARY]

GATEWAY_BINARY defaults to target/release/auditline-local if it exists, else target/debug/…
(relative paths are taken from the repository's root). Measured:

* the overhead of a ``log_*`` call (it only encodes and enqueues): the median and 99th percentile
  over 20,000 calls, while the sender works in the background;
* sustained entries/s from one client to the gateway: batched (the default: 100 per request, one
  request in flight; and two in flight), and one POST per entry (``max_batch=1``), each from
  the first call until ``flush()`` returns — everything stored.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "tests"))

from gateway import REPO, Gateway  # noqa: E402

from auditline import AuditClient  # noqa: E402

CHANGES = {"before": {"status": "draft", "title": "Q3 report"}, "after": {"status": "published", "title": "Q3 report"}}


def enqueue_overhead(gw: Gateway, calls: int, **options: Any) -> tuple[float, float]:
    client = AuditClient(gw.url, api_key=gw.api_key, max_queue=calls + 1, flush_at_exit=False, **options)
    timings: list[int] = []
    clock = time.perf_counter_ns
    for i in range(calls):
        began = clock()
        client.log_update("REPORT", "report-7", project_id="project-456", changes=CHANGES, metadata={"n": i})
        timings.append(clock() - began)
    assert client.flush(timeout=300)
    client.close()
    timings.sort()
    return statistics.median(timings) / 1000, timings[int(len(timings) * 0.99)] / 1000


def throughput(gw: Gateway, entries: int, **options: Any) -> float:
    client = AuditClient(gw.url, api_key=gw.api_key, flush_at_exit=False, **options)
    client.log_view("FILE", "warm-up").result(timeout=30)
    began = time.perf_counter()
    for i in range(entries):
        client.log_update("REPORT", f"report-{i % 500}", project_id="project-456", changes=CHANGES, metadata={"n": i})
    assert client.flush(timeout=600)
    elapsed = time.perf_counter() - began
    assert client.close()
    return entries / elapsed


def main() -> None:
    if len(sys.argv) > 1:
        binary = Path(sys.argv[1])
        binary = binary if binary.is_absolute() else REPO / binary
    else:
        release = REPO / "target" / "release" / "auditline-local"
        binary = release if release.exists() else REPO / "target" / "debug" / "auditline-local"
    os.environ["AUDITLINE_GATEWAY"] = str(binary)
    gw = Gateway().start()
    try:
        rows: list[tuple[str, str, str]] = []
        median, p99 = enqueue_overhead(gw, 20_000)
        rows.append(("`log_update` call overhead (enqueue), median", f"{median:.1f} µs", f"p99 {p99:.1f} µs; target ≤ 20 µs"))
        with tempfile.TemporaryDirectory(dir=REPO / ".tools") as spool:
            median_s, _ = enqueue_overhead(gw, 2_000, spool_dir=spool)
        rows.append(("… with `spool_dir` (each entry fsync'd)", f"{median_s:.1f} µs", "median over 2,000 calls"))
        batched = throughput(gw, 50_000)
        rows.append(("entries/s, batched (100/request, 1 in flight)", f"{batched:,.0f}", "50,000 entries; target ≥ 10,000/s"))
        batched2 = throughput(gw, 50_000, max_in_flight=2)
        rows.append(("entries/s, batched, 2 in flight", f"{batched2:,.0f}", "50,000 entries"))
        single = throughput(gw, 3_000, max_batch=1, linger=0)
        rows.append(("entries/s, one POST per entry (`max_batch=1`)", f"{single:,.0f}", "3,000 entries, same client"))
    finally:
        gw.stop()
    profile = "release" if "/release/" in str(binary) else "debug" if "/debug/" in str(binary) else "custom"
    print(f"Python SDK against `{binary.relative_to(REPO) if binary.is_relative_to(REPO) else binary}` "
          f"({profile} build, --memory); Python {platform.python_version()}, {os.cpu_count()} cores\n")
    print("| measure | value | notes |")
    print("|---|---|---|")
    for name, value, note in rows:
        print(f"| {name} | {value} | {note} |")


if __name__ == "__main__":
    main()
