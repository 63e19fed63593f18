"""Hydration: how fast a shard that gains a namespace serves it from Redis.

Writes N entries (default 100k; random unit vectors, the worst case for an HNSW build) into
a private redis-server, then a fresh shard loads the namespace: the time until it answers
searches (exact, over a flat matrix) is the hydration time; the hnswlib graph then builds
in the background and takes over. Goal: hydration of 100k entries <= 10 s.

    python -m bench hydrate        (SEMCACHE_BENCH_ENTRIES=100000)
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from cache_svc.embedder import EmbedderClient
from cache_svc.entry import Answer, Entry
from cache_svc.eviction import Capacity, make_eviction
from cache_svc.llm import EchoBackend
from cache_svc.shard import Shard, ShardSettings
from cache_svc.store import WriteThroughStore
from semcache import keys
from semcache.dev.localredis import LocalRedis
from semcache.dev.probe import free_port
from semcache.quality.policy import HitPolicy, PolicySet
from semcache.v1 import cache_pb2

ROOT = Path(__file__).resolve().parent.parent
ENTRIES = int(os.environ.get("SEMCACHE_BENCH_ENTRIES", "100000"))


def make_shard(url: str) -> Shard:
    return Shard(
        ShardSettings(shard_id="bench"),
        embedder=EmbedderClient("127.0.0.1:1"),  # never called: searches use stored vectors
        store=WriteThroughStore(url, write_timeout=30),
        llm=EchoBackend(),
        policies=PolicySet((HitPolicy.static(0.9),)),
        eviction=make_eviction("lru", Capacity(max_entries=10_000_000, max_bytes=10**12)),
    )


async def fill(url: str, namespace: str, vectors: np.ndarray) -> float:
    store = WriteThroughStore(url, write_timeout=30)
    await store.start()
    started, now = time.perf_counter(), time.time()
    for start in range(0, len(vectors), 100):
        ops = []
        for i in range(start, min(start + 100, len(vectors))):
            prompt = f"benchmark prompt number {i}"
            ops.append(
                Entry(
                    id=keys.new_entry_id(namespace),
                    namespace=namespace,
                    tenant="bench",
                    prompt=prompt,
                    prompt_key=keys.prompt_key(prompt),
                    answer=Answer(f"answer number {i}"),
                    category="default",
                    created=now,
                    expires=now + 3600,
                    vector=vectors[i],
                )
            )
        await asyncio.gather(*(store.put(e) for e in ops))
    await store.aclose()
    return time.perf_counter() - started


def search_p50_ms(shard: Shard, namespace: str, queries: np.ndarray) -> float:
    ns = shard._namespaces[namespace]
    times = []
    for q in queries:
        started = time.perf_counter()
        ns.nearest(q, time.time())
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def rss_mib() -> float:
    """This process's resident memory now, in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def run(entries: int = ENTRIES) -> dict[str, float]:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((entries, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    namespace = keys.namespace_key(cache_pb2.Scope(tenant="bench"))
    with tempfile.TemporaryDirectory() as tmp:
        server = LocalRedis(free_port(), Path(tmp))
        server.start()
        try:
            fill_s = await fill(server.url, namespace, vectors)
            shard = make_shard(server.url)
            await shard.store.start()
            memory_before = rss_mib()
            started = time.perf_counter()
            await shard.namespace(namespace)
            hydrate_s = time.perf_counter() - started
            flat_ms = search_p50_ms(shard, namespace, vectors[:50])
            await asyncio.gather(*shard._background)
            graph_s = time.perf_counter() - started
            # What the namespace costs the shard: entries, exact map, vectors, the graph.
            bytes_per_entry = (rss_mib() - memory_before) * 2**20 / entries
            graph_ms = search_p50_ms(shard, namespace, vectors[:200])
            hits = sum(
                shard._namespaces[namespace].nearest(v, time.time())[0].similarity > 0.999
                for v in vectors[:200]
            )
            await shard.store.aclose()
        finally:
            server.stop()
    return {
        "entries": entries,
        "fill_s": fill_s,
        "hydrate_s": hydrate_s,
        "flat_search_p50_ms": flat_ms,
        "graph_ready_s": graph_s,
        "graph_search_p50_ms": graph_ms,
        "self_recall_at_1": hits / 200,
        "shard_bytes_per_entry": bytes_per_entry,
    }


def main() -> None:
    print(f"hydration benchmark: {ENTRIES} entries in one namespace", flush=True)
    result = asyncio.run(run())
    print(f"  written to Redis in          {result['fill_s']:.1f} s (setup)")
    print(f"  hydrated (serving) in        {result['hydrate_s']:.1f} s   (goal <= 10 s)")
    print(f"  search while graph builds    p50 {result['flat_search_p50_ms']:.2f} ms (exact)")
    print(f"  graph ready after            {result['graph_ready_s']:.1f} s")
    print(
        f"  search on the graph          p50 {result['graph_search_p50_ms']:.2f} ms, "
        f"recall@1 of stored vectors {result['self_recall_at_1']:.3f}"
    )
    out = ROOT / "bench" / "results" / "hydrate.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps({"benchmark": "hydrate", "date": time.strftime("%Y-%m-%d"), **result}, indent=2)
        + "\n"
    )
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
