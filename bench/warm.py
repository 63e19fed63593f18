"""What warming from a query log buys: the early hit rate of a replayed log, with and
without `semcache warm`'s plan.

The log is `bench trace`'s (the project's own dev and test pairs: each base prompt with its
paraphrases one question, each trap another; Zipf-popular, each request in a random
wording). Its first half is the history `semcache warm` reads; the plan
(`semcache.warmup.plan`, the same code) is asked through the shard's lookup, exact map, the
served model's vectors and the shipped hit policy (`bench.trace.Cache`) until `BUDGET` LLM
calls are spent; then the first `FIRST` requests of the held-back half are replayed on
that cache and on an empty one. Reported: hit and wrong-hit rates, mean of the seeds.
Results: bench/results/warm.json.

    python -m bench warm
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np

from bench import trace
from bench.embed import machine
from cache_svc.eviction import Capacity, make_eviction
from embed_svc.model import OnnxEmbedder
from semcache import warmup
from semcache.quality.policy import HitPolicy, PolicySet

BUDGETS = (50, 200, 800)
FIRST = (500, 2000)


def empty_cache(data: trace.Corpus, policy: HitPolicy) -> trace.Cache:
    """A cache that holds every prompt (warm-up is measured here, not eviction)."""
    return trace.Cache(data, policy, make_eviction("lru", Capacity(max_entries=10**6)))


def warmed(data: trace.Corpus, policy: HitPolicy, history: np.ndarray, budget: int):
    """A cache warmed by the plan of `history` (text indices) within `budget` misses."""
    cache = empty_cache(data, policy)
    counts = warmup.count_prompts(data.texts[i] for i in history)
    index = {text: i for i, text in enumerate(data.texts)}
    vectors = data.vectors[[index[p] for p in counts]]
    spent = 0
    for pick in warmup.plan(counts, vectors, budget):
        if spent == budget:
            break
        hit, _ = cache.ask(index[pick.prompt])
        spent += not hit
    return cache, spent


def replay(cache: trace.Cache, requests: np.ndarray) -> tuple[float, float]:
    outcomes = [cache.ask(int(text)) for text in requests]
    return (
        sum(hit for hit, _ in outcomes) / len(outcomes),
        sum(wrong for _, wrong in outcomes) / len(outcomes),
    )


def main() -> None:
    data = trace.corpus()
    model = OnnxEmbedder().model_id
    policy = PolicySet.shipped().for_model(model)
    print(
        f"warm: {trace.REQUESTS:,} logged requests a seed (half history, half held back), "
        f"budgets {BUDGETS}, first {FIRST} held-back requests; model {model}",
        flush=True,
    )
    results: dict[str, Any] = {}
    started = time.perf_counter()
    for budget in BUDGETS:
        rows: dict[str, Any] = {}
        for first in FIRST:
            runs = []
            for seed in trace.SEEDS:
                log = trace.stream(data, seed)
                history, later = log[: len(log) // 2], log[len(log) // 2 :][:first]
                cache, spent = warmed(data, policy, history, budget)
                empty = empty_cache(data, policy)
                runs.append((replay(cache, later), replay(empty, later), spent))
            rows[f"first {first}"] = {
                "hit_rate_warmed": float(np.mean([w[0] for w, _, _ in runs])),
                "hit_rate_cold": float(np.mean([c[0] for _, c, _ in runs])),
                "wrong_hit_rate_warmed": float(np.mean([w[1] for w, _, _ in runs])),
                "wrong_hit_rate_cold": float(np.mean([c[1] for _, c, _ in runs])),
                "llm_calls_spent": float(np.mean([s for _, _, s in runs])),
            }
            row = rows[f"first {first}"]
            print(
                f"  budget {budget:4}  first {first:5}: hits {row['hit_rate_cold']:6.1%} cold, "
                f"{row['hit_rate_warmed']:6.1%} warmed; wrong hits "
                f"{row['wrong_hit_rate_cold']:.2%} / {row['wrong_hit_rate_warmed']:.2%}",
                flush=True,
            )
        results[f"budget {budget}"] = rows
    report = {
        "benchmark": "warm",
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "model": model,
        "logged_requests": trace.REQUESTS,
        "seeds": list(trace.SEEDS),
        "results": results,
        "seconds": time.perf_counter() - started,
    }
    out = trace.RESULTS / "warm.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out.relative_to(trace.ROOT)}")
