"""The evaluation's metrics: the `pairs` and `stream` protocols over pairs, vectors and a
HitPolicy, as plain rows (dicts of counts and rates, every field described in
docs/eval.md). Pure logic: no I/O.

`pairs` judges each pair alone: would the policy serve `a`'s answer for `b`, given their
cosine similarity? `stream` is what a cache sees: every distinct `a` is cached, every `b` is
a query against all of them (exact search), and the policy judges the best candidate, with
the second best's similarity as context. Both also sweep one static threshold over
0.50..0.99, and compare the policy with the static threshold of the same recall.
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from semcache.evaluation.data import Pair, Vectors
from semcache.quality.policy import HitPolicy

#: The static sweep: 0.50, 0.51, ..., 0.99.
THRESHOLDS = tuple(round(0.5 + i / 100, 2) for i in range(50))
#: Kinds that are not near-miss traps: a label-0 pair of any other kind is a trap.
NOT_TRAPS = frozenset({"paraphrase", "unrelated"})
#: Queries per similarity block in exact search: 256 x 40k float32 = 40 MB at a time.
SEARCH_CHUNK = 256


def _share(part: int, whole: int) -> float | None:
    """part / whole, or None (JSON null) when whole is 0: undefined, not 0 or 1."""
    return part / whole if whole else None


def _is_trap(kinds: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return ~labels & (kinds != "") & ~np.isin(kinds, list(NOT_TRAPS))


def pair_metrics(hit: np.ndarray, label: np.ndarray, kinds: np.ndarray | None = None) -> dict:
    """Confusion counts and rates of hit decisions against labels (one per pair).

    With `kinds`, also `traps_blocked` (share of label-0 trap pairs not hit) and
    `paraphrases_kept` (share of label-1 pairs hit).
    """
    hit, label = hit.astype(bool), label.astype(bool)
    tp = int((hit & label).sum())
    fp = int((hit & ~label).sum())
    fn = int((~hit & label).sum())
    tn = int((~hit & ~label).sum())
    precision, recall = _share(tp, tp + fp), _share(tp, tp + fn)
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else (0.0 if fp + fn else None)
    row: dict[str, Any] = {
        "queries": len(hit),
        "positives": tp + fn,
        "hits": tp + fp,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "hit_rate": _share(tp + fp, len(hit)),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "accuracy": _share(tp + tn, len(hit)),
        "false_positive_rate": _share(fp, fp + tn),
    }
    if kinds is not None:
        traps = _is_trap(kinds, label)
        row["traps_blocked"] = _share(int((traps & ~hit).sum()), int(traps.sum()))
        row["paraphrases_kept"] = recall
    return row


def stream_metrics(
    hit: np.ndarray, right: np.ndarray, label: np.ndarray, kinds: np.ndarray | None = None
) -> dict:
    """Rates of a cache's answers: per query, whether it hit, whether its best candidate is a
    right answer for it (`right`), and whether it is a true duplicate query (`label`).

    With `kinds`, also `traps_blocked` (share of label-0 trap queries without a wrong hit)
    and `paraphrases_kept` (= recall).
    """
    hit, right, label = hit.astype(bool), right.astype(bool), label.astype(bool)
    queries, positives, hits = len(hit), int(label.sum()), int(hit.sum())
    correct = int((hit & right).sum())
    wrong = hits - correct
    recall = _share(int((hit & right & label).sum()), positives)
    row: dict[str, Any] = {
        "queries": queries,
        "positives": positives,
        "hits": hits,
        "correct_hits": correct,
        "wrong_hits": wrong,
        "hit_rate": _share(hits, queries),
        "recall": recall,
        "precision": _share(correct, hits),
        "wrong_hit_rate": _share(wrong, queries),
    }
    if kinds is not None:
        traps = _is_trap(kinds, label)
        row["traps_blocked"] = _share(int((traps & ~(hit & ~right)).sum()), int(traps.sum()))
        row["paraphrases_kept"] = recall
    return row


def _by_kind(
    protocol: str, hit: np.ndarray, right: np.ndarray, label: np.ndarray, kinds: np.ndarray
) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for kind in sorted(set(kinds.tolist())):
        m = kinds == kind
        row = {
            "queries": int(m.sum()),
            "positives": int((m & label).sum()),
            "hits": int((m & hit).sum()),
        }
        if protocol == "pairs":
            row |= {
                "hits_positive": int((m & hit & label).sum()),
                "hits_negative": int((m & hit & ~label).sum()),
            }
        else:
            row |= {
                "correct_hits": int((m & hit & right).sum()),
                "wrong_hits": int((m & hit & ~right).sum()),
            }
        out[kind] = row
    return out


def _decisions_summary(decisions: Sequence[Any]) -> dict[str, Any]:
    thresholds = {round(d.threshold, 6) for d in decisions}
    return {
        # One number when every decision used the same threshold, else null (see categories).
        "threshold": thresholds.pop() if len(thresholds) == 1 else None,
        "guards": dict(Counter(d.guard for d in decisions if d.guard and not d.hit)),
        "categories": dict(Counter(d.category for d in decisions)),
    }


def compare(policy: dict[str, Any], sweep: Sequence[dict[str, Any]], protocol: str) -> dict:
    """The policy against the static threshold of the same recall: the highest swept
    threshold whose recall is at least the policy's (`matched` false, and the lowest
    threshold, when none reaches it), with the error each makes there and their ratio."""
    metric = "wrong_hit_rate" if protocol == "stream" else "false_positive_rate"
    shown: tuple[str, ...] = ("recall", "precision", "hit_rate", metric) + (
        ("wrong_hits",) if protocol == "stream" else ("fp",)
    )
    if "traps_blocked" in policy:
        shown += ("traps_blocked",)
    target = policy["recall"]
    reaching = [
        r
        for r in sweep
        if r["recall"] is not None and target is not None and r["recall"] >= target - 1e-12
    ]
    static = max(reaching, key=lambda r: r["threshold"]) if reaching else sweep[0]
    mine, theirs = policy[metric], static[metric]
    return {
        "at": "recall",
        "metric": metric,
        "static_threshold": static["threshold"],
        "matched": bool(reaching),
        "policy": {k: policy[k] for k in shown},
        "static": {k: static[k] for k in shown},
        # policy / static error at the same recall: < 1 means fewer errors than static.
        "ratio": mine / theirs if mine is not None and theirs else None,
    }


def _kinds(pairs: Sequence[Pair]) -> np.ndarray | None:
    kinds = np.array([p.kind for p in pairs], dtype=object)
    return kinds if any(kinds) else None


def evaluate_pairs(pairs: Sequence[Pair], vectors: Vectors, policy: HitPolicy) -> dict:
    """Each pair alone: similarity = cosine(a, b); the policy decides whether `b` (the query)
    may be answered with `a` (the cached prompt). See `report` for the result."""
    sims = np.einsum("ij,ij->i", vectors.of([p.a for p in pairs]), vectors.of([p.b for p in pairs]))
    # float64 from here: the sweep and the policy compare against the same numbers.
    sims = np.clip(sims.astype(np.float64), -1.0, 1.0)
    label = np.array([p.label == 1 for p in pairs])
    kinds = _kinds(pairs)
    decisions = [
        policy.decide(p.b, p.a, float(s), second=None, category=p.category)
        for p, s in zip(pairs, sims, strict=True)
    ]
    hit = np.array([d.hit for d in decisions], dtype=bool)
    row = pair_metrics(hit, label, kinds) | _decisions_summary(decisions)
    if kinds is not None:
        row["by_kind"] = _by_kind("pairs", hit, hit, label, kinds)
    sweep = [{"threshold": t} | pair_metrics(sims >= t, label, kinds) for t in THRESHOLDS]
    return {
        "queries": len(pairs),
        "entries": None,
        "policy": row,
        "sweep": sweep,
        "comparison": compare(row, sweep, "pairs"),
    }


def nearest(
    entries: np.ndarray, queries: np.ndarray, chunk: int = SEARCH_CHUNK
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact cosine search of unit vectors: per query, the best entry's row, its similarity,
    and the second best's similarity (NaN with a single entry)."""
    best = np.empty(len(queries), dtype=np.int64)
    best_sim = np.empty(len(queries), dtype=np.float64)
    second = np.full(len(queries), np.nan, dtype=np.float64)
    entries = np.ascontiguousarray(entries, dtype=np.float32)
    for start in range(0, len(queries), chunk):
        block = np.asarray(queries[start : start + chunk], dtype=np.float32) @ entries.T
        rows = np.arange(len(block))
        top = block.argmax(axis=1)
        best[start : start + len(block)] = top
        best_sim[start : start + len(block)] = block[rows, top]
        if entries.shape[0] > 1:
            block[rows, top] = -np.inf
            second[start : start + len(block)] = block.max(axis=1)
    return best, np.clip(best_sim, -1.0, 1.0), np.clip(second, -1.0, 1.0)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A query and the nearest cached entry, as a shard would see them."""

    query: str
    cached: str
    similarity: float
    second: float | None  # the runner-up's similarity; None with a single entry
    category: str  # the first pair's with this query; "" lets the policy detect it
    right: bool  # the entry is one of the query's right answers


def stream_candidates(pairs: Sequence[Pair], vectors: Vectors) -> list[Candidate]:
    """A cache holding every distinct `a`, asked every distinct `b`: its nearest entry.

    The right answers for a query `b` are every `a` labelled 1 with that `b` in any pair,
    and an entry with the very same text as `b`.
    """
    entries = list(dict.fromkeys(p.a for p in pairs))
    entry_row = {t: i for i, t in enumerate(entries)}
    queries = list(dict.fromkeys(p.b for p in pairs))
    best, best_sim, second = nearest(vectors.of(entries), vectors.of(queries))
    right_answers: defaultdict[str, set[int]] = defaultdict(set)
    category: dict[str, str] = {}
    for p in pairs:
        category.setdefault(p.b, p.category)
        if p.label == 1:
            right_answers[p.b].add(entry_row[p.a])
    for q in queries:
        if q in entry_row:
            right_answers[q].add(entry_row[q])
    return [
        Candidate(
            query=q,
            cached=entries[best[i]],
            similarity=float(best_sim[i]),
            second=None if math.isnan(second[i]) else float(second[i]),
            category=category[q],
            right=int(best[i]) in right_answers[q],
        )
        for i, q in enumerate(queries)
    ]


def wrong_hits(
    pairs: Sequence[Pair], vectors: Vectors, policy: HitPolicy, count: int, seed: int = 1
) -> list[Candidate]:
    """`count` of the policy's wrong hits in the stream setting, drawn with a fixed seed:
    to read what the labels call wrong."""
    wrong = [
        c
        for c in stream_candidates(pairs, vectors)
        if not c.right
        and policy.decide(c.query, c.cached, c.similarity, second=c.second, category=c.category).hit
    ]
    return random.Random(seed).sample(wrong, min(count, len(wrong)))


def evaluate_stream(pairs: Sequence[Pair], vectors: Vectors, policy: HitPolicy) -> dict:
    """A cache holding every distinct `a`, asked every `b` (one query per pair): see
    `stream_candidates`. A label-1 query is a true duplicate; a label-0 query should miss
    unless it finds one of its right answers."""
    entries = set(p.a for p in pairs)
    candidates = {c.query: c for c in stream_candidates(pairs, vectors)}
    label = np.array([p.label == 1 for p in pairs])
    right = np.array([candidates[p.b].right for p in pairs])
    sims = np.array([candidates[p.b].similarity for p in pairs])
    decisions = []
    for p in pairs:
        c = candidates[p.b]
        decisions.append(
            policy.decide(p.b, c.cached, c.similarity, second=c.second, category=p.category)
        )
    hit = np.array([d.hit for d in decisions], dtype=bool)
    kinds = _kinds(pairs)
    row = stream_metrics(hit, right, label, kinds) | _decisions_summary(decisions)
    if kinds is not None:
        row["by_kind"] = _by_kind("stream", hit, right, label, kinds)
    sweep = [{"threshold": t} | stream_metrics(sims >= t, right, label, kinds) for t in THRESHOLDS]
    return {
        "queries": len(pairs),
        "entries": len(entries),
        "retrieval": {
            "distinct_queries": len(candidates),
            "exact": sum(q in entries for q in candidates),
            # Share of label-1 queries whose best candidate is right: the recall ceiling of
            # any policy (it only decides hit or miss on the best candidate).
            "top1_right": _share(int((right & label).sum()), int(label.sum())),
        },
        "policy": row,
        "sweep": sweep,
        "comparison": compare(row, sweep, "stream"),
    }
