"""When one namespace outgrows one shard: the designs semcache could take, simulated from
measured costs (docs/scale.md discusses the result).

Inputs, all measured by other benchmarks in this repo (rerun them first on the machine
you care about): `bench/results/scale.json` (search latency, memory per entry, recall at
several sizes and ef values, snapshot takeover) and `bench/results/mesh.json` (the cost of
a routed call, a shard's lookup throughput). The recall of centroid routing is measured
here, on the real vectors `bench scale` embedded (its cache): a spherical k-means over
them (a plain Lloyd's loop: this is a simulation, not the shard), queries routed to their
`nprobe` nearest centroids.

Scenarios: one namespace of 50M prompts (a single app, one system prompt), and one of 1M
asked 5,000 times a second. Designs: one shard (today); P hash sub-partitions with
scatter-gather lookups; R read replicas; P centroid-routed partitions. For each: shards
needed (memory and CPU), lookup latency p50/p99 (Monte Carlo over the measured
distributions), recall against one exact search, and what a write and a reader see.

    python -m bench simulate
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.embed import ROOT, machine

RESULTS = ROOT / "bench" / "results"
CACHE = Path(os.environ.get("SEMCACHE_CACHE_DIR", Path.home() / ".cache" / "semcache")) / "bench"
#: What a shard pod is given in this simulation: memory for entries, and cores.
SHARD_MEMORY_BYTES = 16 * 2**30
SHARD_CORES = 2
#: One Redis Cluster master's memory for entries (a 32 GiB node at 75 %).
MASTER_MEMORY_BYTES = 24 * 2**30
SAMPLES = 20_000
RNG = np.random.default_rng(0)


def lognormal(p50: float, p99: float, n: int) -> np.ndarray:
    """Samples of a log-normal with that median and 99th percentile."""
    sigma = max(1e-6, math.log(max(p99, p50 * 1.0001) / p50) / 2.326)
    return p50 * np.exp(sigma * RNG.standard_normal(n))


class Costs:
    """The measured per-operation costs, interpolated in log(size)."""

    def __init__(self, scale: dict, mesh: dict) -> None:
        rows = sorted(scale["sizes"], key=lambda r: r["entries"])
        self.sizes = np.log([r["entries"] for r in rows])
        self.p50 = np.log([r["graph_search_p50_ms"] for r in rows])
        self.p99 = np.log([r["graph_search_p99_ms"] for r in rows])
        big = rows[-1]
        self.shard_bytes = big["shard_bytes_per_entry"]
        self.redis_bytes = big.get(
            "redis_bytes_per_entry_with_snapshot", big["redis_bytes_per_entry"]
        )
        self.recall = {r["entries"]: r["recall_at_1"] for r in rows}
        exact = mesh["semcache"]["results"]["exact"]
        # A routed call that does no search: router + shard + two gRPC hops.
        self.call_p50, self.call_p99 = exact["1"]["p50_ms"], exact["1"]["p99_ms"]
        # What one shard sustains (2 cores), lookups of a repeated text (vector cached)
        # and of new text (an embedding each): per core.
        self.lookups_per_core = mesh["semcache"]["results"]["semantic"]["32"]["per_s"] / 2
        self.new_text_per_core = mesh["semcache"]["results"]["semantic_new"]["32"]["per_s"] / 2

    def search(self, size: float, n: int) -> np.ndarray:
        """Graph search latency samples (ms) at `size` entries, extrapolated past the
        largest size measured along the measured trend."""
        x = math.log(size)
        p50 = math.exp(
            np.interp(x, self.sizes, self.p50, right=None)
            if x <= self.sizes[-1]
            else self._extrapolate(x, self.p50)
        )
        p99 = math.exp(
            np.interp(x, self.sizes, self.p99)
            if x <= self.sizes[-1]
            else self._extrapolate(x, self.p99)
        )
        return lognormal(p50, p99, n)

    def _extrapolate(self, x: float, ys: np.ndarray) -> float:
        slope = (ys[-1] - ys[0]) / (self.sizes[-1] - self.sizes[0])
        return float(ys[-1] + slope * (x - self.sizes[-1]))

    def call(self, n: int) -> np.ndarray:
        return lognormal(self.call_p50, self.call_p99, n)


def scatter_gather(costs: Costs, size: int, partitions: int) -> np.ndarray:
    """A lookup fanned out to `partitions` shards, answered when the slowest answers."""
    legs = np.stack(
        [costs.call(SAMPLES) + costs.search(size / partitions, SAMPLES) for _ in range(partitions)]
    )
    return legs.max(axis=0)


def centroid_recall(partitions: int, nprobes: tuple[int, ...]) -> dict[int, dict[str, float]]:
    """Measured on bench scale's cached vectors (100,000 stored, 1,000 paraphrase queries):
    per nprobe, how often the exact nearest stored vector is in one of the query's `nprobe`
    nearest partitions; and the partitions' imbalance. Empty without the cache."""
    stored = sorted(CACHE.glob("vectors-*-100000-*.npy"))
    queries = sorted(CACHE.glob("vectors-*-1000-*.npy"))
    if not stored or not queries:
        return {}
    x, q = np.load(stored[-1]), np.load(queries[-1])
    centroids = x[RNG.choice(len(x), partitions, replace=False)]
    for _ in range(15):  # spherical k-means (Lloyd's iterations on the unit sphere)
        assign = (x @ centroids.T).argmax(axis=1)
        for c in range(partitions):
            members = x[assign == c]
            if len(members):
                mean = members.sum(axis=0)
                centroids[c] = mean / np.linalg.norm(mean)
    assign = (x @ centroids.T).argmax(axis=1)
    nearest = assign[(q @ x.T).argmax(axis=1)]
    order = np.argsort(-(q @ centroids.T), axis=1)
    sizes = np.bincount(assign, minlength=partitions)
    return {
        nprobe: {
            "recall_at_1": float(
                np.mean([n in o[:nprobe] for n, o in zip(nearest, order, strict=True)])
            ),
            "largest_over_mean": float(sizes.max() / sizes.mean()),
        }
        for nprobe in nprobes
    }


def summary(latency: np.ndarray) -> dict[str, float]:
    return {
        "p50_ms": float(np.percentile(latency, 50)),
        "p99_ms": float(np.percentile(latency, 99)),
    }


def designs_for_size(costs: Costs, entries: int) -> list[dict[str, object]]:
    """50M prompts in one namespace: partitions needed for memory, and what each costs."""
    rows = []
    memory = entries * costs.shard_bytes
    one = {
        "design": "one shard (today)",
        "shards": 1,
        "fits": memory <= SHARD_MEMORY_BYTES,
        "shard_memory_gib": memory / 2**30,
        **summary(costs.call(SAMPLES) + costs.search(entries, SAMPLES)),
    }
    rows.append(one)
    partitions = math.ceil(memory / SHARD_MEMORY_BYTES)
    rows.append(
        {
            "design": f"{partitions} hash sub-partitions, scatter-gather",
            "shards": partitions,
            "fits": True,
            "shard_memory_gib": memory / partitions / 2**30,
            "redis_masters": math.ceil(entries * costs.redis_bytes / MASTER_MEMORY_BYTES),
            "cpu_per_lookup": f"{partitions} searches",
            **summary(scatter_gather(costs, entries, partitions)),
        }
    )
    recall = centroid_recall(partitions, (1, 2, 4))
    for nprobe in (1, 2, 4):
        measured = recall.get(nprobe)
        latency = (
            scatter_gather(costs, entries, partitions)
            if nprobe > 1
            else (costs.call(SAMPLES) + costs.search(entries / partitions, SAMPLES))
        )
        if nprobe > 1:  # nprobe of the partitions, not all of them
            latency = np.stack(
                [
                    costs.call(SAMPLES) + costs.search(entries / partitions, SAMPLES)
                    for _ in range(nprobe)
                ]
            ).max(axis=0)
        rows.append(
            {
                "design": f"{partitions} centroid partitions, nprobe {nprobe}",
                "shards": partitions,
                "fits": True,
                "cpu_per_lookup": f"{nprobe} searches + centroid scoring",
                "measured_on_real_vectors": measured,
                **summary(latency),
            }
        )
    return rows


def designs_for_load(costs: Costs, entries: int, lookups_per_s: float) -> list[dict[str, object]]:
    """5,000 lookups/s to one namespace: replicas needed, and the alternatives."""
    per_shard_cached = costs.lookups_per_core * SHARD_CORES
    per_shard_new = costs.new_text_per_core * SHARD_CORES
    rows = []
    for label, per_shard in (
        ("repeated texts (vector cached)", per_shard_cached),
        ("new texts (an embedding each)", per_shard_new),
    ):
        replicas = math.ceil(lookups_per_s / per_shard)
        rows.append(
            {
                "design": f"{replicas} read replicas; {label}",
                "shards": replicas,
                "memory_multiplier": replicas,
                "one_shard_sustains_per_s": per_shard,
                **summary(costs.call(SAMPLES) + costs.search(entries, SAMPLES)),
            }
        )
    return rows


def main() -> None:
    scale = json.loads((RESULTS / "scale.json").read_text())
    mesh = json.loads((RESULTS / "mesh.json").read_text())
    costs = Costs(scale, mesh)
    result: dict[str, Any] = {
        "benchmark": "simulate",
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "inputs": {
            "scale": {"date": scale["date"], "machine": scale["machine"]},
            "mesh": {"date": mesh["date"], "machine": mesh["machine"]},
            "shard_memory_gib": SHARD_MEMORY_BYTES / 2**30,
            "shard_cores": SHARD_CORES,
            "shard_bytes_per_entry": costs.shard_bytes,
            "redis_bytes_per_entry": costs.redis_bytes,
        },
        "fifty_million_prompts": designs_for_size(costs, 50_000_000),
        "one_million_at_5000_per_s": designs_for_load(costs, 1_000_000, 5000),
    }
    for name in ("fifty_million_prompts", "one_million_at_5000_per_s"):
        print(name)
        for row in result[name]:
            extra = row.get("measured_on_real_vectors")
            print(
                f"  {row['design']:<55} shards {row['shards']:>4}  p50 {row['p50_ms']:6.2f} ms  "
                f"p99 {row['p99_ms']:6.2f} ms"
                + (
                    f"  recall@1 {extra['recall_at_1']:.3f} "
                    f"(largest partition {extra['largest_over_mean']:.1f}x mean)"
                    if extra
                    else ""
                )
                + ("" if row.get("fits", True) else "  (does not fit: memory)")
            )
    out = RESULTS / "simulate.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
