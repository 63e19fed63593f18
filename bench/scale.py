"""Scale: one namespace of 10k, 100k and 1M entries in a shard.

For each size, `bench hydrate`'s measurement (random unit vectors written to a private
Redis, a fresh shard loads them): hydration time, search latency while the graph builds
(exact) and once it is built (hnswlib, the shard's settings), the graph's build time, and
the shard's memory per entry. The search is the only step of a hit whose cost grows with
the namespace; the rest of a hit through the router is in `bench mesh`. 1M takes about
half an hour on 2 cores, most of it the graph build (one thread, as a shard runs it).

    python -m bench scale      (SEMCACHE_BENCH_SIZES=10000,100000,1000000)
"""

from __future__ import annotations

import asyncio
import json
import os
import time

from bench.embed import machine
from bench.hydrate import ROOT, run

SIZES = [int(n) for n in os.environ.get("SEMCACHE_BENCH_SIZES", "10000,100000,1000000").split(",")]


def main() -> None:
    rows = []
    print(
        f"{'entries':>9} {'hydrate s':>10} {'flat p50 ms':>12} {'graph s':>8} "
        f"{'graph p50 ms':>13} {'recall@1':>9} {'bytes/entry':>12}",
        flush=True,
    )
    for entries in SIZES:
        r = asyncio.run(run(entries))
        rows.append(r)
        print(
            f"{entries:9d} {r['hydrate_s']:10.1f} {r['flat_search_p50_ms']:12.2f} "
            f"{r['graph_ready_s']:8.0f} {r['graph_search_p50_ms']:13.2f} "
            f"{r['self_recall_at_1']:9.3f} {r['shard_bytes_per_entry']:12.0f}",
            flush=True,
        )
    out = ROOT / "bench" / "results" / "scale.json"
    out.write_text(
        json.dumps(
            {
                "benchmark": "scale",
                "date": time.strftime("%Y-%m-%d"),
                "machine": machine(),
                "sizes": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {out.relative_to(ROOT)}")
