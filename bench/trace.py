"""Eviction policies on a replayed trace: which entries a full cache should keep.

The trace is built from the project's own pairs (data/pairs/groups, the dev and test
splits, which nothing that ships was fitted on): each group's base prompt and its
paraphrases are one question (one right answer), each of its traps another question of
its own. Questions are asked with Zipf-distributed popularity (s = 1, a seeded order), each
time in one of its wordings picked at random, as a stream of `REQUESTS` requests.

The cache is the shard's own logic, one namespace: an exact match first, else the nearest
cached prompt by cosine (the served model's vectors, exact search) judged by the shipped
hit policy for that model (threshold, guards, calibrated model), hits recorded with the
eviction policy; a miss stores the request's prompt with its question's answer, and the
policy (the shard's `cache_svc.eviction` classes) names victims once the cache holds more
than its capacity: 5, 10 and 25 % of the distinct prompts. A hit is wrong when the entry
answers another question.

Two scenarios: a steady stream, and one whose popular questions are drawn again halfway
(drift: what users ask changes, which favours a policy that forgets). Reported per policy
and capacity, over the stream after its first fifth (the cache fills): the hit rate, the
wrong-hit rate (wrong hits per request), averaged over `SEEDS` streams.
Results: bench/results/trace.json.

    python -m bench trace
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.embed import machine
from bench.scale import embed
from cache_svc.eviction import POLICIES, Capacity, Eviction, make_eviction
from embed_svc.model import OnnxEmbedder
from semcache import keys
from semcache.quality.dataset import load_groups
from semcache.quality.policy import HitPolicy, PolicySet

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
GROUPS = ROOT / "data" / "pairs" / "groups"
REQUESTS = int(os.environ.get("SEMCACHE_BENCH_REQUESTS", "30000"))
SEEDS = (1, 2, 3)
CAPACITIES = (0.05, 0.10, 0.25)
ZIPF_S = 1.0
WARMUP_SHARE = 0.2


@dataclass(frozen=True, slots=True)
class Corpus:
    texts: list[str]
    question: np.ndarray  # per text: the id of the question it asks
    wordings: list[list[int]]  # per question: its texts
    vectors: np.ndarray


def corpus() -> Corpus:
    groups = [g for g in load_groups([GROUPS]) if g.split in ("dev", "test")]
    texts: list[str] = []
    question: list[int] = []
    wordings: list[list[int]] = []
    for group in groups:
        same = [group.prompt, *(t for ts in group.paraphrases.values() for t in ts)]
        for cluster in (same, *([t] for t in group.traps.values())):
            wordings.append(list(range(len(texts), len(texts) + len(cluster))))
            question.extend([len(wordings) - 1] * len(cluster))
            texts.extend(cluster)
    return Corpus(texts, np.array(question), wordings, embed(texts))


def stream(corpus: Corpus, seed: int, drift: bool = False) -> np.ndarray:
    """Text indices: a Zipf-popular question each time, in a random wording of it. With
    `drift`, which questions are popular is drawn again halfway (what users ask changes)."""
    rng = np.random.default_rng(seed)
    questions = len(corpus.wordings)
    popularity = 1.0 / np.arange(1, questions + 1) ** ZIPF_S
    halves = []
    order = rng.permutation(questions)  # which question is how popular
    for size in (REQUESTS // 2, REQUESTS - REQUESTS // 2):
        halves.append(order[rng.choice(questions, size=size, p=popularity / popularity.sum())])
        if drift:
            order = rng.permutation(questions)
    return np.array([rng.choice(corpus.wordings[q]) for q in np.concatenate(halves)])


class Cache:
    """One namespace of a shard, in memory: the exact map, exact nearest-neighbour search,
    the hit policy and an eviction policy."""

    def __init__(self, corpus: Corpus, policy: HitPolicy, eviction: Eviction) -> None:
        self.corpus, self.policy, self.eviction = corpus, policy, eviction
        self.by_prompt: dict[str, str] = {}  # normalised prompt -> entry id
        self.text_of: dict[str, int] = {}  # entry id -> corpus text
        self.slots: dict[str, int] = {}  # entry id -> row in `vectors`
        self.free: list[int] = []
        self.vectors = np.zeros((0, corpus.vectors.shape[1]), dtype=np.float32)
        self.alive = np.zeros(0, dtype=bool)
        self.ids: list[str] = []
        self.next_id = 0

    def ask(self, text: int) -> tuple[bool, bool]:
        """(hit, wrong hit) for a request; a miss stores it."""
        prompt = self.corpus.texts[text]
        entry = self.by_prompt.get(keys.prompt_key(prompt))
        if entry is not None:
            self.eviction.used(entry)
            return True, bool(self._question(entry) != self.corpus.question[text])
        vector = self.corpus.vectors[text]
        similarities = np.where(self.alive, self.vectors @ vector, -np.inf)
        if len(similarities) and np.isfinite(best := similarities.max()):
            top = np.argsort(-similarities)[:2]
            second = float(similarities[top[1]]) if len(top) > 1 else None
            nearest = self.ids[top[0]]
            decision = self.policy.decide(
                prompt,
                self.corpus.texts[self.text_of[nearest]],
                float(best),
                second=second if second is not None and np.isfinite(second) else None,
            )
            if decision.hit:
                self.eviction.used(nearest)
                return True, bool(self._question(nearest) != self.corpus.question[text])
        self._store(text, similarities)
        return False, False

    def _question(self, entry: str) -> int:
        return int(self.corpus.question[self.text_of[entry]])

    def _store(self, text: int, similarities: np.ndarray) -> None:
        entry = f"e{self.next_id}"
        self.next_id += 1
        prompt = self.corpus.texts[text]
        neighbours: list[str] = []
        if self.eviction.uses_neighbours and len(similarities):  # as the shard: its 4 nearest
            for row in np.argsort(-similarities)[:4]:
                if (
                    np.isfinite(similarities[row])
                    and self.policy.decide(
                        prompt, self.corpus.texts[self.text_of[self.ids[row]]], similarities[row]
                    ).hit
                ):
                    neighbours.append(self.ids[row])
        slot = self.free.pop() if self.free else self._grow()
        self.vectors[slot], self.alive[slot] = self.corpus.vectors[text], True
        self.ids[slot] = entry
        self.slots[entry], self.text_of[entry] = slot, text
        self.by_prompt[keys.prompt_key(prompt)] = entry
        self.eviction.added(entry, 1, neighbours)
        for victim in self.eviction.victims():
            self._remove(victim)

    def _grow(self) -> int:
        self.vectors = np.vstack([self.vectors, np.zeros_like(self.corpus.vectors[:1])])
        self.alive = np.append(self.alive, False)
        self.ids.append("")
        return len(self.ids) - 1

    def _remove(self, entry: str) -> None:
        slot = self.slots.pop(entry)
        self.alive[slot] = False
        self.free.append(slot)
        del self.by_prompt[keys.prompt_key(self.corpus.texts[self.text_of.pop(entry)])]
        self.eviction.removed(entry)


def replay(corpus: Corpus, requests: np.ndarray, policy: HitPolicy, name: str, size: int):
    cache = Cache(corpus, policy, make_eviction(name, Capacity(max_entries=size)))
    counted = hits = wrong = 0
    start = int(WARMUP_SHARE * len(requests))
    for position, text in enumerate(requests):
        hit, wrong_hit = cache.ask(int(text))
        if position >= start:
            counted += 1
            hits += hit
            wrong += wrong_hit
    return hits / counted, wrong / counted


def main() -> None:
    data = corpus()
    model = OnnxEmbedder().model_id
    policy = PolicySet.shipped().for_model(model)
    distinct = len(data.texts)
    print(
        f"trace: {len(data.wordings):,} questions in {distinct:,} wordings (dev and test "
        f"groups), {REQUESTS:,} requests, Zipf s={ZIPF_S}, seeds {SEEDS}; model {model}",
        flush=True,
    )
    results: dict[str, Any] = {}
    started = time.perf_counter()
    for scenario, drift in (("steady", False), ("drift", True)):
        streams = [stream(data, seed, drift) for seed in SEEDS]
        results[scenario] = {}
        for share in CAPACITIES:
            size = max(1, round(share * distinct))
            row: dict[str, Any] = {"entries": size}
            for name in POLICIES:
                runs = [replay(data, requests, policy, name, size) for requests in streams]
                row[name] = {
                    "hit_rate": float(np.mean([h for h, _ in runs])),
                    "wrong_hit_rate": float(np.mean([w for _, w in runs])),
                    "hit_rate_per_seed": [h for h, _ in runs],
                }
                print(
                    f"  {scenario:6} capacity {share:4.0%} ({size:5,} entries)  {name:9} hits "
                    f"{row[name]['hit_rate']:6.2%}  wrong hits "
                    f"{row[name]['wrong_hit_rate']:6.3%}",
                    flush=True,
                )
            results[scenario][f"{share:.0%}"] = row
    report = {
        "benchmark": "trace",
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "model": model,
        "questions": len(data.wordings),
        "distinct_prompts": distinct,
        "requests": REQUESTS,
        "zipf_s": ZIPF_S,
        "seeds": list(SEEDS),
        "warmup_share": WARMUP_SHARE,
        "results": results,
        "seconds": time.perf_counter() - started,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "trace.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")
