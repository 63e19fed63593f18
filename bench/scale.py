"""Scale: one namespace of 100k and 1M entries of real text in a shard.

The namespace holds every base prompt of the project's pairs (`data/pairs/groups`) among
distractors: the questions and sentences of QQP dev, MRPC and STS-B (read where they lie,
as evaluation data: nothing is fitted here), and, past their ~90k, the same with one of ten
everyday openings ("Quick question: ...") — near-duplicates, as a busy namespace has. All
embedded by the model the shards serve (vectors cached under ~/.cache/semcache/bench). The
queries are the pairs' paraphrases of the stored prompts (close, filler, typo, terse, loose).

For each size: the write throughput into Redis (standalone, and at 100k a Redis Cluster of
3 masters), the bytes per entry in Redis and in the shard, and two takeovers of the
namespace by a fresh shard:
- without a snapshot: served by exact search at once, the graph built on every core (its
  snapshot saved to Redis when built);
- from the snapshot: the time until it serves from its graph.
Then search latency p50/p99 on the graph at the shard's query ef (which grows with the
namespace), and recall@1: how often the graph's nearest stored prompt is the exact
search's (what an approximate index can lose), next to how often either finds the query's
own stored prompt (what the embedding can; per kind), and the same at other ef values.

    python -m bench scale      (SEMCACHE_BENCH_SIZES=100000,1000000)
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import hashlib
import json
import os
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import redis as sync_redis

from bench.embed import ROOT, machine
from cache_svc.embedder import EmbedderClient
from cache_svc.entry import Answer, Entry
from cache_svc.eviction import Capacity, make_eviction
from cache_svc.llm import EchoBackend
from cache_svc.namespace import Namespace
from cache_svc.shard import Shard, ShardSettings
from cache_svc.store import WriteThroughStore
from embed_svc.model import OnnxEmbedder
from semcache import keys
from semcache.dev.localredis import LocalRedis, LocalRedisCluster
from semcache.dev.probe import free_cluster_ports, free_port
from semcache.quality.policy import HitPolicy, PolicySet
from semcache.v1 import cache_pb2

SIZES = [int(n) for n in os.environ.get("SEMCACHE_BENCH_SIZES", "100000,1000000").split(",")]
SHARED = ROOT.parent / "shared" / "data"
PARAPHRASE_KINDS = ("close", "filler", "typo", "terse", "loose")
OPENINGS = (
    "",
    "Quick question: ",
    "Can you tell me this: ",
    "Honestly, ",
    "For a school project, ",
    "My manager asked me: ",
    "In simple terms, ",
    "I was wondering, ",
    "As a beginner, ",
    "Help please: ",
    "One more thing, ",
    "Out of curiosity, ",
)
QUERIES = 1000
EF_SWEEP = (64, 128, 256, 512)
CACHE = Path(os.environ.get("SEMCACHE_CACHE_DIR", Path.home() / ".cache" / "semcache")) / "bench"


def stored_prompts_and_queries() -> tuple[list[str], list[tuple[str, int, str]]]:
    """The pairs' base prompts, and (paraphrase, index of its base, kind) for a sample."""
    bases: list[str] = []
    index: dict[str, int] = {}  # prompt key -> its base (a namespace keeps one per key)
    queries: list[tuple[str, int, str]] = []
    for path in sorted((ROOT / "data" / "pairs" / "groups").glob("*.jsonl")):
        for line in path.read_text().splitlines():
            group = json.loads(line)
            key = keys.prompt_key(group["prompt"])
            if key not in index:
                index[key] = len(bases)
                bases.append(group["prompt"])
            for kind in PARAPHRASE_KINDS:
                for text in group.get(kind) or []:
                    queries.append((text, index[key], kind))
    rng = np.random.default_rng(0)
    sample = rng.choice(len(queries), size=min(QUERIES, len(queries)), replace=False)
    return bases, [queries[i] for i in sorted(sample)]


def distractors(count: int, taken: set[str]) -> list[str]:
    """`count` texts of the evaluation sets, then with openings, none of whose prompt keys
    (normalised prompts: one entry each in a namespace) is in `taken`."""
    pool: list[str] = []
    for path in (
        SHARED / "qqp-dev.jsonl",
        SHARED / "mrpc-train.jsonl",
        ROOT / "data" / "pairs" / "stsb-train.jsonl",
    ):
        for line in path.read_text().splitlines():
            pair = json.loads(line)
            pool += [pair["a"], pair["b"]]
    seen, texts = set(taken), []
    for opening in OPENINGS:
        for text in pool:
            text = opening + (text[0].lower() + text[1:] if opening else text)
            if (key := keys.prompt_key(text)) not in seen:
                seen.add(key)
                texts.append(text)
                if len(texts) == count:
                    return texts
    raise ValueError(f"only {len(texts)} distractors; fewer than {count}")


def embed(texts: list[str]) -> np.ndarray:
    """The texts' vectors by the served model, cached by model and texts."""
    model = OnnxEmbedder(intra_op_threads=os.cpu_count() or 1)
    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
    path = CACHE / f"vectors-{model.model_id}-{len(texts)}-{digest}.npy"
    if path.exists():
        return np.load(path)
    started = time.perf_counter()
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # batches of like length
    vectors = np.empty((len(texts), model.dimension), dtype=np.float32)
    for start in range(0, len(order), 256):
        batch = order[start : start + 256]
        vectors[batch] = model.embed([texts[i] for i in batch])
        if start % 51200 == 0:
            print(f"  embedded {start:,}/{len(texts):,} in {time.perf_counter() - started:.0f} s")
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


def rss_mib() -> float:
    """This process's resident memory now, in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def make_entries(namespace: str, texts: list[str], vectors: np.ndarray, model: str):
    now = time.time()
    for i, (text, vector) in enumerate(zip(texts, vectors, strict=True)):
        yield Entry(
            id=keys.new_entry_id(namespace),
            namespace=namespace,
            tenant="bench",
            prompt=text,
            prompt_key=keys.prompt_key(text),
            answer=Answer(f"the answer to prompt number {i}, about as long as a short reply"),
            category="default",
            created=now,
            expires=now + 24 * 3600,
            vector=vector,
            model=model,
        )


async def fill(store: WriteThroughStore, entries) -> float:
    """Entries/s written through the store (100 writes in flight, as shards under load)."""
    started, count, batch = time.perf_counter(), 0, []
    for entry in entries:
        batch.append(entry)
        if len(batch) == 100:
            await asyncio.gather(*(store.put(e) for e in batch))
            count, batch = count + len(batch), []
    await asyncio.gather(*(store.put(e) for e in batch))
    return (count + len(batch)) / (time.perf_counter() - started)


def make_shard(url: str, cluster: bool = False) -> Shard:
    return Shard(
        ShardSettings(shard_id="bench", reembed_rate=0),
        embedder=EmbedderClient("127.0.0.1:1"),  # never called: searches use stored vectors
        store=WriteThroughStore(url, cluster=cluster, write_timeout=30),
        llm=EchoBackend(),
        policies=PolicySet((HitPolicy.static(0.9),)),
        eviction=make_eviction("lru", Capacity(max_entries=10**8, max_bytes=10**13)),
    )


def redis_bytes(port: int) -> int:
    client = sync_redis.Redis(port=port)
    try:
        return int(client.info("memory")["used_memory"])
    finally:
        client.close()


def search(ns: Namespace, model: str, queries: np.ndarray, ef: int | None = None):
    """(top-1 entry ids, latencies in ms) of the queries on the namespace, at the
    shard's ef or at `ef`."""
    original = ns.index.params
    if ef is not None:
        ns.index.params = dataclasses.replace(original, ef=ef, ef_base_size=10**12)
    found, times = [], []
    now = time.time()
    for q in queries:
        started = time.perf_counter()
        top = ns.nearest(q, model, now)
        times.append(1000 * (time.perf_counter() - started))
        found.append(top[0].entry.id if top else "")
    ns.index.params = original
    return found, times


def exact_top1(vectors: np.ndarray, ids: list[str], queries: np.ndarray) -> list[str]:
    """The entry exact search puts first for each query (by rows of 100k at a time)."""
    best = np.full(len(queries), -2.0, dtype=np.float32)
    where = np.zeros(len(queries), dtype=np.int64)
    for start in range(0, len(vectors), 100_000):
        scores = vectors[start : start + 100_000] @ queries.T
        top = scores.argmax(axis=0)
        value = scores[top, np.arange(len(queries))]
        better = value > best
        best[better], where[better] = value[better], top[better] + start
    return [ids[i] for i in where]


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


async def run(size: int, bases, queries, cluster_too: bool) -> dict[str, object]:
    texts = bases + distractors(size - len(bases), {keys.prompt_key(b) for b in bases})
    print(f"{size:,} entries: embedding {len(texts):,} texts (cached after the first run)")
    vectors = embed(texts)
    query_vectors = embed([q for q, _, _ in queries])
    model = OnnxEmbedder().model_id
    namespace = keys.namespace_key(cache_pb2.Scope(tenant="bench-scale"))
    result: dict[str, object] = {"entries": size}
    with tempfile.TemporaryDirectory() as tmp:
        # AOF written but not fsynced at each write, like the cluster's nodes below.
        server = LocalRedis(free_port(), Path(tmp) / "redis", ("--appendfsync", "no"))
        server.start()
        try:
            store = WriteThroughStore(server.url, write_timeout=30)
            await store.start()
            empty = redis_bytes(server.port)
            ids: list[str] = []

            def tracked(entries):
                for entry in entries:
                    ids.append(entry.id)
                    yield entry

            result["write_per_s"] = await fill(
                store, tracked(make_entries(namespace, texts, vectors, model))
            )
            result["redis_bytes_per_entry"] = (redis_bytes(server.port) - empty) / size
            started = time.perf_counter()
            await store.load_namespace(namespace, time.time())
            result["read_s"] = time.perf_counter() - started
            await store.aclose()
            print(f"  written at {result['write_per_s']:,.0f}/s, read in {result['read_s']:.1f} s")

            # A takeover without a snapshot: exact search at once, then the graph.
            gc.collect()
            memory = rss_mib()
            shard = make_shard(server.url)
            await shard.store.start()
            started = time.perf_counter()
            ns = await shard.namespace(namespace)
            result["hydrate_s"] = time.perf_counter() - started
            _, flat_ms = search(ns, model, query_vectors[:50])
            result["flat_search_p50_ms"] = statistics.median(flat_ms)
            while shard._background:
                await asyncio.gather(*list(shard._background))
            result["graph_ready_s"] = time.perf_counter() - started
            result["shard_bytes_per_entry"] = (rss_mib() - memory) * 2**20 / size
            result["snapshot_saved"] = shard.graphs.saved == 1
            result["redis_bytes_per_entry_with_snapshot"] = (
                redis_bytes(server.port) - empty
            ) / size
            print(
                f"  takeover without a snapshot: serving in {result['hydrate_s']:.1f} s "
                f"(exact, p50 {result['flat_search_p50_ms']:.1f} ms), graph after "
                f"{result['graph_ready_s']:.0f} s"
            )
            exact = exact_top1(vectors, ids, query_vectors)
            own = [ids[base] for _, base, _ in queries]
            found, times = search(ns, model, query_vectors)
            result["ef"] = ns.index.params.ef_for(size)
            result["graph_search_p50_ms"] = statistics.median(times)
            result["graph_search_p99_ms"] = percentile(times, 99)
            result["recall_at_1"] = float(
                np.mean([f == e for f, e in zip(found, exact, strict=True)])
            )
            result["own_prompt_at_1_exact"] = float(
                np.mean([e == o for e, o in zip(exact, own, strict=True)])
            )
            result["own_prompt_at_1_graph"] = float(
                np.mean([f == o for f, o in zip(found, own, strict=True)])
            )
            by_kind: dict[str, list[tuple[bool, bool]]] = defaultdict(list)
            for (_, _, kind), f, e, o in zip(queries, found, exact, own, strict=True):
                by_kind[kind].append((e == o, f == o))
            result["own_prompt_at_1_by_kind"] = {
                kind: {
                    "exact": float(np.mean([x for x, _ in v])),
                    "graph": float(np.mean([y for _, y in v])),
                }
                for kind, v in sorted(by_kind.items())
            }
            sweep = {}
            for ef in EF_SWEEP:
                found_ef, times_ef = search(ns, model, query_vectors, ef)
                sweep[ef] = {
                    "recall_at_1": float(
                        np.mean([f == e for f, e in zip(found_ef, exact, strict=True)])
                    ),
                    "p50_ms": statistics.median(times_ef),
                    "p99_ms": percentile(times_ef, 99),
                }
            result["ef_sweep"] = sweep
            print(
                f"  graph search at ef {result['ef']}: p50 {result['graph_search_p50_ms']:.2f} ms, "
                f"p99 {result['graph_search_p99_ms']:.2f} ms, recall@1 {result['recall_at_1']:.3f}"
            )
            await shard.aclose()
            del shard, ns
            gc.collect()

            # A takeover from the snapshot.
            shard = make_shard(server.url)
            await shard.store.start()
            started = time.perf_counter()
            ns = await shard.namespace(namespace)
            result["snapshot_takeover_s"] = time.perf_counter() - started
            result["snapshot_restored"] = shard.graphs.restored == 1 and not ns.index.building
            found, times = search(ns, model, query_vectors)
            result["snapshot_recall_at_1"] = float(
                np.mean([f == e for f, e in zip(found, exact, strict=True)])
            )
            result["snapshot_search_p99_ms"] = percentile(times, 99)
            print(
                f"  takeover from the snapshot: serving from the graph in "
                f"{result['snapshot_takeover_s']:.1f} s "
                f"(recall@1 {result['snapshot_recall_at_1']:.3f})"
            )
            await shard.aclose()
            del shard, ns
            gc.collect()
        finally:
            server.stop()
        if cluster_too:
            result["cluster"] = await cluster_throughput(
                Path(tmp) / "cluster", namespace, texts, vectors, model
            )
    return result


async def cluster_throughput(tmp: Path, namespace, texts, vectors, model) -> dict[str, float]:
    cluster = LocalRedisCluster(free_cluster_ports(6), tmp)
    cluster.start()
    try:
        store = WriteThroughStore(cluster.url, cluster=True, write_timeout=30)
        await store.start()
        write = await fill(store, make_entries(namespace, texts, vectors, model))
        started = time.perf_counter()
        await store.load_namespace(namespace, time.time())
        read = time.perf_counter() - started
        await store.aclose()
    finally:
        cluster.stop()
    print(f"  redis cluster: written at {write:,.0f}/s, read in {read:.1f} s")
    return {"write_per_s": write, "read_s": read}


def main() -> None:
    bases, queries = stored_prompts_and_queries()
    rows = [asyncio.run(run(size, bases, queries, cluster_too=size <= 100_000)) for size in SIZES]
    out = ROOT / "bench" / "results" / "scale.json"
    out.write_text(
        json.dumps(
            {
                "benchmark": "scale",
                "date": time.strftime("%Y-%m-%d"),
                "machine": machine(),
                "stored_prompts": len(bases),
                "queries": len(queries),
                "sizes": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
