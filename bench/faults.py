"""Gray failures: one part of the mesh frozen (SIGSTOP) for a while under load, then resumed.

Starts `semcache up`'s mesh (private Redis, embedder, 2 shards, router) on free loopback
ports and runs CALLERS closed-loop callers through the router, each call with a DEADLINE
second deadline: every fourth a new prompt (a miss: embedding, the echo LLM, a store), the
others a prompt the caller stored before (an exact hit), over 12 tenants so both shards own
some. First a baseline, then for each part (the embedder, Redis, shard-0) the same load while
that part is frozen for SECONDS, then resumed. After each fault, once the mesh has settled,
every entry stored so far is looked up again: it must be an exact hit.

    python -m bench faults      (SEMCACHE_BENCH_SECONDS=5 per phase)

Goal (issue 15): with any one part frozen, 0 failed calls, at least 50 % of the baseline's
calls, p99 <= 1.5 s, and every stored entry still an exact hit. Results:
bench/results/faults.json.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc

from bench.embed import machine
from bench.mesh import RESULTS, free_ports
from semcache.dev.mesh import LocalMesh
from semcache.v1 import cache_pb2, cache_pb2_grpc

SECONDS = float(os.environ.get("SEMCACHE_BENCH_SECONDS", "5"))
CALLERS = 4
DEADLINE = 5.0
LLM_DELAY_MS = 20.0
TENANTS = [f"faults-{i}" for i in range(12)]
#: How long after a resume the mesh gets before its entries are checked (a frozen shard
#: rejoins the ring and lets go of its stale copies within about 2 s).
SETTLE_SECONDS = 3.0


class Load:
    """CALLERS closed-loop callers; every outcome kept (latency, or the failure)."""

    def __init__(
        self, cache: cache_pb2_grpc.SemanticCacheStub, stored: list[cache_pb2.CompleteRequest]
    ) -> None:
        self.cache = cache
        self.stored = stored  # every request whose answer was stored, for the checks
        self._fresh = itertools.count()

    async def run(self, seconds: float) -> dict[str, Any]:
        latencies: list[float] = []
        failures: list[str] = []
        stop = time.monotonic() + seconds

        async def caller(n: int) -> None:
            mine: list[cache_pb2.CompleteRequest] = []
            for i in itertools.count():
                if time.monotonic() >= stop:
                    return
                if i % 4 == 0 or not mine:
                    k = next(self._fresh)
                    request = cache_pb2.CompleteRequest(
                        scope=cache_pb2.Scope(tenant=TENANTS[k % len(TENANTS)]),
                        prompt=f"What should I know about topic {k}?",
                    )
                else:
                    request = mine[i % len(mine)]
                started = time.perf_counter()
                try:
                    reply = await self.cache.Complete(request, timeout=DEADLINE)
                except grpc.aio.AioRpcError as e:
                    failures.append(f"{e.code().name}: {e.details()}")
                    continue
                finally:  # a failed call's wait counts too
                    latencies.append(time.perf_counter() - started)
                if reply.cache.stored:
                    mine.append(request)
                    self.stored.append(request)

        await asyncio.gather(*(caller(n) for n in range(CALLERS)))
        ordered = sorted(latencies)
        return {
            "calls": len(latencies),
            "failed": len(failures),
            "failures": sorted(set(failures))[:5],
            "p50_ms": 1000 * statistics.median(ordered) if ordered else None,
            "p99_ms": 1000 * ordered[int(0.99 * (len(ordered) - 1))] if ordered else None,
            "max_ms": 1000 * ordered[-1] if ordered else None,
        }


async def still_exact_hits(
    cache: cache_pb2_grpc.SemanticCacheStub, stored: list[cache_pb2.CompleteRequest]
) -> int:
    """How many stored entries are not an exact hit any more."""
    lost = 0
    for request in stored:
        reply = await cache.Lookup(
            cache_pb2.LookupRequest(scope=request.scope, prompt=request.prompt), timeout=10
        )
        lost += reply.cache.kind != cache_pb2.MATCH_KIND_EXACT
    return lost


def processes(mesh: LocalMesh) -> dict[str, subprocess.Popen[bytes]]:
    found = {c.name: c.process for c in mesh.children if c.process is not None}
    if mesh.redis is not None and mesh.redis.process is not None:
        found["redis"] = mesh.redis.process
    return found


async def session(mesh: LocalMesh) -> dict[str, Any]:
    parts = processes(mesh)
    async with grpc.aio.insecure_channel(mesh.router) as channel:
        cache = cache_pb2_grpc.SemanticCacheStub(channel)
        stored: list[cache_pb2.CompleteRequest] = []
        load = Load(cache, stored)
        await load.run(1.0)  # warm-up: namespaces hydrated, connections open
        phases = {"baseline": await load.run(SECONDS)}
        print(f"  baseline: {_row(phases['baseline'])}", flush=True)
        for part in ("embedder", "redis", "shard-0"):
            process = parts[part]
            process.send_signal(signal.SIGSTOP)
            try:
                result = await load.run(SECONDS)
            finally:
                process.send_signal(signal.SIGCONT)
            await asyncio.sleep(SETTLE_SECONDS)
            result["stored_entries_checked"] = len(stored)
            result["not_an_exact_hit_after"] = await still_exact_hits(cache, stored)
            result["share_of_baseline_calls"] = result["calls"] / phases["baseline"]["calls"]
            phases[f"{part} frozen"] = result
            print(
                f"  {part} frozen {SECONDS:g} s: {_row(result)}; "
                f"{result['not_an_exact_hit_after']} of {len(stored)} stored entries "
                "not an exact hit after",
                flush=True,
            )
    return phases


def _row(r: dict[str, Any]) -> str:
    return (
        f"{r['calls']} calls, {r['failed']} failed, p50 {r['p50_ms']:.0f} ms, "
        f"p99 {r['p99_ms']:.0f} ms, max {r['max_ms']:.0f} ms"
    )


def goals(phases: dict[str, Any]) -> dict[str, bool]:
    faults = {name: r for name, r in phases.items() if name != "baseline"}
    return {
        "no_failed_call": all(r["failed"] == 0 for r in faults.values()),
        "half_the_baseline_calls": all(
            r["share_of_baseline_calls"] >= 0.5 for r in faults.values()
        ),
        "p99_at_most_1.5_s": all(r["p99_ms"] <= 1500 for r in faults.values()),
        "every_entry_an_exact_hit_after": all(
            r["not_an_exact_hit_after"] == 0 for r in faults.values()
        ),
    }


def main() -> None:
    print(
        f"faults benchmark: {CALLERS} callers, {DEADLINE:g} s deadlines, each part frozen "
        f"{SECONDS:g} s",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as data:
        mesh = LocalMesh(
            shards=2, ports=free_ports(), data_dir=Path(data), echo_delay_ms=LLM_DELAY_MS
        )
        mesh.start()
        try:
            phases = asyncio.run(session(mesh))
        finally:
            for process in processes(mesh).values():
                process.send_signal(signal.SIGCONT)  # never leave a part stopped
            mesh.stop()
    met = goals(phases)
    report = {
        "benchmark": "faults",
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "callers": CALLERS,
        "deadline_seconds": DEADLINE,
        "frozen_seconds": SECONDS,
        "llm_delay_ms": LLM_DELAY_MS,
        "phases": phases,
        "goals": met,
    }
    print("goals: " + ", ".join(f"{k} {'met' if v else 'NOT met'}" for k, v in met.items()))
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "faults.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out.relative_to(RESULTS.parent.parent)}")
