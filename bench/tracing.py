"""What tracing costs: `bench mesh`'s semcache workload (exact, semantic, semantic_new and
miss calls through the router, 1, 8 and 32 closed-loop callers) on three meshes in one run:

- before: the services as they were before tracing existed (a git worktree of `BEFORE`,
  imported ahead of this checkout by the children), so "off costs nothing" is measured
  against code that has no tracing at all, not assumed;
- off: this checkout, no `OTEL_*` variables (the default);
- on: this checkout, every request traced (`OTEL_TRACES_SAMPLER=always_on`), every span
  exported over OTLP/gRPC to a sink in this process that counts and drops them (a
  collector's receiving end, without its processing).

Also, off alone and exactly: the time the tracing calls one semantic-hit Lookup makes (at
the router, the shard and the embedder) take when tracing is off, timed in a loop, against
the CPU such a call costs the services.

The three run in turn, `ROUNDS` times over, and each figure is the median of its rounds:
on 2 cores with the load generator beside the mesh, one run's throughput swings by tens of
percent, a drift that alternating spreads over all three. Beside calls per second, each
row has the CPU the services spent per call (router, shards and embedder, from /proc),
which the load generator does not blur. Results: bench/results/tracing.json, with the
ratios of off and on to before.

    python -m bench tracing      (SEMCACHE_BENCH_SECONDS=5 per measurement,
                                  SEMCACHE_BENCH_ROUNDS=3; SEMCACHE_BENCH_BEFORE=<git rev>
                                  to compare another)
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from bench import mesh
from bench.embed import machine
from cache_svc.shard import Outcome
from semcache.dev.probe import free_port
from semcache.runtime import tracing
from semcache.v1 import cache_pb2

#: The last commit before tracing: the services without any of it.
BEFORE = os.environ.get("SEMCACHE_BENCH_BEFORE", "f22576d")
ROUNDS = int(os.environ.get("SEMCACHE_BENCH_ROUNDS", "3"))


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


MEASURES = ("per_s", "p50_ms", "p99_ms", "services_cpu_ms_per_call")


def medians(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Each kind's and caller count's measures, the median over the rounds."""
    first = rounds[0]
    return {
        kind: {
            callers: {m: statistics.median(r[kind][callers][m] for r in rounds) for m in MEASURES}
            for callers in by_callers
        }
        for kind, by_callers in first.items()
    }


def compare(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per kind and callers: each mesh's medians, and off's and on's over before's (calls
    per second, and the services' CPU per call)."""
    rows: dict[str, Any] = {}
    print(
        f"\n{'kind':14}{'callers':>8}"
        + "".join(f"{n + ' /s':>11}{n + ' cpu':>12}" for n in runs)
        + "   off/before (/s, cpu)   on/before (/s, cpu)"
    )
    for kind, by_callers in runs["before"].items():
        for callers, base in by_callers.items():
            row = {name: runs[name][kind][callers] for name in runs}
            ratios = {
                f"{name}/before": {
                    "per_s": row[name]["per_s"] / base["per_s"],
                    "cpu_per_call": row[name]["services_cpu_ms_per_call"]
                    / base["services_cpu_ms_per_call"],
                }
                for name in runs
                if name != "before"
            }
            rows[f"{kind} x{callers}"] = {"medians": row, "ratios": ratios}
            print(
                f"{kind:14}{callers:>8}"
                + "".join(
                    f"{row[n]['per_s']:11.0f}{row[n]['services_cpu_ms_per_call']:10.2f}ms"
                    for n in runs
                )
                + "".join(
                    f"   {r['per_s']:9.3f} {r['cpu_per_call']:6.3f}  " for r in ratios.values()
                )
            )
    return rows


def off_path_seconds(iterations: int = 200_000) -> float:
    """Seconds per request that the tracing calls of one semantic-hit Lookup take with
    tracing off: the router's, the shard's and the embedder's, in the order they run. The
    shard's two timed stages count only what the spans added to their timing (the stage
    wrapper), not the timing and metric they had before."""
    tracing.install(None)
    tracer = tracing.Tracer("bench")
    info = cache_pb2.CacheInfo(status=cache_pb2.CACHE_STATUS_HIT, similarity=0.95)
    outcome = Outcome(status="miss")

    def request() -> None:
        with tracer.server_span("SemanticCache/Lookup", ()):  # the router
            with tracer.span("forward", {"shard": "s", "attempt": 1}):
                message_context = tracing.carrier()
                with tracer.server_span("ShardLink/Lookup", message_context):  # the shard
                    with tracer.span("exact"):
                        pass
                    with outcome.stage("embed"):
                        tracing.carrier()
                        tracing.annotate(texts=1, model="m")  # the embedder
                    with outcome.stage("search"):
                        tracing.annotate(candidates=1, entries=1)
                    with tracer.span("policy"):
                        tracing.annotate(similarity=0.95, hit=True, guard="none")
                    tracing.annotate_cache(info)
            tracing.annotate_cache(info)

    def timing_before() -> None:  # how a stage was timed before it had a span
        started = time.perf_counter()
        outcome.timed("embed", started)

    def per_call(call: Callable[[], None]) -> float:
        started = time.perf_counter()
        for _ in range(iterations):
            call()
        return (time.perf_counter() - started) / iterations

    return per_call(request) - 2 * per_call(timing_before)


def main() -> None:
    off_path = off_path_seconds()
    print(f"tracing off: {1e6 * off_path:.2f} us of tracing calls per semantic-hit Lookup")
    work = mesh.workload()
    queries = mesh.select_queries(work)
    rounds: dict[str, list[dict[str, Any]]] = {"before": [], "off": [], "on": []}
    with worktree(BEFORE) as before, span_sink() as (sink, port):
        tracing_on = {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
            "OTEL_EXPORTER_OTLP_INSECURE": "true",
            "OTEL_TRACES_SAMPLER": "always_on",
        }
        for number in range(1, ROUNDS + 1):
            with environment({"PYTHONPATH": str(before)}):
                label = f"round {number}, before ({BEFORE}, no tracing code)"
                rounds["before"].append(_run(label, work, queries))
            rounds["off"].append(_run(f"round {number}, off (no OTEL_* variables)", work, queries))
            with environment(tracing_on):
                label = f"round {number}, on (every request traced, OTLP to a sink)"
                rounds["on"].append(_run(label, work, queries))
        time.sleep(6)  # the last batch (OTEL_BSP_SCHEDULE_DELAY: 5 s) reaches the sink
        exported = sink.spans
    runs = {name: medians(results) for name, results in rounds.items()}
    report = {
        "benchmark": "tracing",
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "seconds_per_measurement": mesh.SECONDS,
        "before": BEFORE,
        "rounds": ROUNDS,
        "spans_exported_while_on": exported,
        "off_path_us_per_lookup": 1e6 * off_path,
        "results": compare(runs),
        "every_round": rounds,
    }
    print(f"\nspans exported while on: {exported}")
    out = mesh.RESULTS / "tracing.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out.relative_to(mesh.ROOT)}")
