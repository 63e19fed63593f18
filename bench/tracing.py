"""What tracing costs: `bench mesh`'s semcache workload (exact, semantic, semantic_new and
miss calls through the router, 1, 8 and 32 closed-loop callers) on three meshes in one run:

- before: the services as they were before tracing existed (a git worktree of `BEFORE`,
  imported ahead of this checkout by the children), so "off costs nothing" is measured
  against code that has no tracing at all, not assumed;
- off: this checkout, no `OTEL_*` variables (the default);
- on: this checkout, every request traced (`OTEL_TRACES_SAMPLER=always_on`), every span
  exported over OTLP/gRPC to a sink in this process that counts and drops them (a
  collector's receiving end, without its processing).

Results: bench/results/tracing.json, with the ratios of off and on to before.

    python -m bench tracing      (SEMCACHE_BENCH_SECONDS=5 per measurement;
                                  SEMCACHE_BENCH_BEFORE=<git rev> to compare another)
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from bench import mesh
from bench.embed import machine
from semcache.dev.probe import free_port

#: The last commit before tracing: the services without any of it.
BEFORE = os.environ.get("SEMCACHE_BENCH_BEFORE", "f22576d")


class SpanSink(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP/gRPC trace receiver that counts the spans it is sent and keeps none."""

    def __init__(self) -> None:
        self.spans = 0

    def Export(  # noqa: N802 - the proto's method name
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self.spans += sum(
            len(scope.spans)
            for resource in request.resource_spans
            for scope in resource.scope_spans
        )
        return trace_service_pb2.ExportTraceServiceResponse()


@contextlib.contextmanager
def span_sink() -> Iterator[tuple[SpanSink, int]]:
    sink = SpanSink()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(sink, server)
    port = server.add_insecure_port(f"127.0.0.1:{free_port()}")
    server.start()
    try:
        yield sink, port
    finally:
        server.stop(None)


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """`values` in this process's environment, which the mesh's children inherit."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def worktree(rev: str) -> Iterator[Path]:
    """A checkout of `rev` (its generated stubs included), removed afterwards."""
    with tempfile.TemporaryDirectory() as parent:
        path = Path(parent) / "before"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(path), rev],
            cwd=mesh.ROOT,
            check=True,
            capture_output=True,
        )
        try:
            yield path
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(path)],
                cwd=mesh.ROOT,
                check=False,
                capture_output=True,
            )


def _run(name: str, work: dict[str, Any], queries: dict[str, Any]) -> dict[str, Any]:
    print(f"\n{name}:", flush=True)
    return mesh.run_semcache(work, queries)["results"]


def compare(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per kind and callers: calls/s and p50/p99 of each run, and off and on over before."""
    rows: dict[str, Any] = {}
    print(f"\n{'kind':14}{'callers':>8}" + "".join(f"{n + ' /s':>12}" for n in runs) + "  ratios")
    for kind, by_callers in runs["before"].items():
        for callers, base in by_callers.items():
            row = {name: runs[name][kind][callers] for name in runs}
            ratios = {
                f"{name}/before": row[name]["per_s"] / base["per_s"]
                for name in runs
                if name != "before"
            }
            rows[f"{kind} x{callers}"] = {"runs": row, "throughput_ratios": ratios}
            print(
                f"{kind:14}{callers:>8}"
                + "".join(f"{row[name]['per_s']:12.0f}" for name in runs)
                + "  "
                + "  ".join(f"{k} {v:.3f}" for k, v in ratios.items())
            )
    return rows


def main() -> None:
    work = mesh.workload()
    queries = mesh.select_queries(work)
    runs: dict[str, dict[str, Any]] = {}
    with worktree(BEFORE) as before, environment({"PYTHONPATH": str(before)}):
        runs["before"] = _run(f"before ({BEFORE}, no tracing code)", work, queries)
    runs["off"] = _run("off (no OTEL_* variables)", work, queries)
    with (
        span_sink() as (sink, port),
        environment(
            {
                "OTEL_TRACES_EXPORTER": "otlp",
                "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
                "OTEL_EXPORTER_OTLP_INSECURE": "true",
                "OTEL_TRACES_SAMPLER": "always_on",
            }
        ),
    ):
        runs["on"] = _run("on (every request traced, OTLP to a sink)", work, queries)
        time.sleep(6)  # the last batch (OTEL_BSP_SCHEDULE_DELAY: 5 s) reaches the sink
        exported = sink.spans
    report = {
        "benchmark": "tracing",
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "seconds_per_measurement": mesh.SECONDS,
        "before": BEFORE,
        "spans_exported_while_on": exported,
        "results": compare(runs),
    }
    print(f"\nspans exported while on: {exported}")
    out = mesh.RESULTS / "tracing.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out.relative_to(mesh.ROOT)}")
