"""A judge measured as the shipped one is fitted: for benchmarks that change the model or
the similarity the policy reads (`bench pair_vectors`, `bench wise`).

The policy is refitted exactly as `semcache calibrate` fits the shipped one (train split,
cut on dev for precision 0.9, the shipped features), its cut then swept, and each point
measured on

- the project's test split (each pair alone): paraphrases kept, traps served, per kind;
- `tests/data/pairs.jsonl` (another writer's traps and paraphrases), each pair alone;
- QQP dev's held-out fifth as a cache (every `a` cached, every distinct `b` asked: recall
  = right hits / queries with a right answer cached, wrong = wrong hits / queries), and
  MRPC train each pair alone (both human-written; measured, never fitted on).

A fitted point is set against another judge's swept curve at equal kept (equal recall on
QQP): `versus`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from semcache.evaluation import calibrate, data, metrics
from semcache.evaluation.metrics import Candidate
from semcache.quality.policy import HitPolicy

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
#: What the shipped tuned policy is fitted with (docs/quality.md).
FEATURES = [
    "similarity",
    "margin",
    *(f"guard_{g}" for g in ("negation", "antonym", "number", "unit", "date", "entity")),
    *(f"guard_{g}" for g in ("order", "swap")),
]
FLOOR = 0.7
TARGET_PRECISION = 0.9
CUTS = tuple(np.round(np.linspace(0.3, 0.95, 14), 2))
#: Per set, the figure held equal and the one compared: (set, x, y).
AXES = (
    ("test", "kept", "served"),
    ("writer", "kept", "served"),
    ("mrpc", "kept", "served"),
    ("qqp", "recall", "wrong"),
)

#: A change to the similarity the policy reads: (cosines, query vectors, cached vectors)
#: -> similarities.
Adjust = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def unchanged(similarity: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return similarity


@dataclass(frozen=True)
class Sets:
    """The project's splits and the held-out sets."""

    train: Sequence[data.Pair]
    dev: Sequence[data.Pair]
    test: Sequence[data.Pair]
    writer: Sequence[data.Pair]
    qqp: Sequence[data.Pair]
    mrpc: Sequence[data.Pair]

    @classmethod
    def load(cls) -> Sets:
        groups = data.load_pairs(ROOT / "data" / "pairs" / "groups")
        return cls(
            train=data.select(groups, "train"),
            dev=data.select(groups, "dev"),
            test=data.select(groups, "test"),
            writer=data.load_pairs(ROOT / "tests" / "data" / "pairs.jsonl"),
            qqp=data.select(data.load_pairs(SHARED / "qqp-dev.jsonl"), "test"),
            mrpc=data.load_pairs(SHARED / "mrpc-train.jsonl"),
        )

    def texts(self) -> list[str]:
        every = (self.train, self.dev, self.test, self.writer, self.qqp, self.mrpc)
        return list(dict.fromkeys(t for s in every for t in data.texts_of(s)))


def candidates(
    pairs: Sequence[data.Pair], vectors: data.Vectors, adjust: Adjust = unchanged
) -> list[Candidate]:
    """The nearest entry of each query, its similarity adjusted. The runner-up moves by as
    much, so the margin feature stays the cosine's (only the nearest is judged)."""
    found = metrics.stream_candidates(pairs, vectors)
    similarity = adjust(
        np.array([c.similarity for c in found]),
        vectors.of([c.query for c in found]),
        vectors.of([c.cached for c in found]),
    )
    return [
        dataclasses.replace(
            c,
            similarity=float(s),
            second=None if c.second is None else c.second + float(s) - c.similarity,
        )
        for c, s in zip(found, similarity, strict=True)
    ]


def pair_hits(
    pairs: Sequence[data.Pair], vectors: data.Vectors, adjust: Adjust, policy: HitPolicy
) -> np.ndarray:
    """Each pair alone: whether `policy` serves the cached `a` for the query `b`."""
    u, v = vectors.of([p.a for p in pairs]), vectors.of([p.b for p in pairs])
    similarity = adjust(np.einsum("ij,ij->i", u, v), u, v)
    return np.array(
        [
            policy.decide(p.b, p.a, float(s), category=p.category).hit
            for p, s in zip(pairs, similarity, strict=True)
        ]
    )


def pair_rates(pairs: Sequence[data.Pair], hit: np.ndarray) -> dict[str, float]:
    """Paraphrases kept and traps served (%), and per kind the share served."""
    label = np.array([p.label == 1 for p in pairs])
    kinds = np.array([p.kind for p in pairs])
    row = {"kept": 100 * hit[label].mean(), "served": 100 * hit[~label].mean()}
    row |= {k: 100 * hit[kinds == k].mean() for k in sorted(set(kinds) - {""})}
    return {k: round(float(x), 1) for k, x in row.items()}


def cache_hits(found: Sequence[Candidate], policy: HitPolicy) -> np.ndarray:
    """As a cache: whether `policy` serves each query's nearest entry."""
    return np.array(
        [
            policy.decide(c.query, c.cached, c.similarity, second=c.second, category=c.category).hit
            for c in found
        ],
        dtype=bool,
    )


def cache_rates(
    pairs: Sequence[data.Pair], found: Sequence[Candidate], hit: np.ndarray
) -> dict[str, float]:
    """Recall (right hits / queries with a right answer cached) and wrong hits per query (%)."""
    answerable = {p.b for p in pairs if p.label == 1}
    right = sum(c.right for c, h in zip(found, hit, strict=True) if h)
    return {
        "recall": round(right / len(answerable), 3),
        "wrong": round(100 * (int(hit.sum()) - right) / len(found), 2),
    }


def served_at_kept(score: np.ndarray, label: np.ndarray, kept: float) -> float:
    """Each pair alone, one score as the only rule: the share (%) of label-0 pairs at or
    above the threshold that keeps `kept` of the label-1 pairs."""
    threshold = np.quantile(score[label], 1 - kept)
    return round(100 * float((score[~label] >= threshold).mean()), 1)


def with_cut(policy: HitPolicy, cut: float) -> HitPolicy:
    assert policy.model is not None
    return dataclasses.replace(policy, model=dataclasses.replace(policy.model, cut=cut, cuts={}))


def fitted(
    sets: Sets, vectors: data.Vectors, adjust: Adjust = unchanged
) -> tuple[HitPolicy, dict[str, Any]]:
    """The policy fitted as shipped on these vectors (the similarity adjusted), and what the
    calibrator reports of the fit (its vetoes and cut among it)."""
    return calibrate.calibrate_candidates(
        candidates(sets.train, vectors, adjust),
        base=HitPolicy(thresholds={"default": FLOOR}),
        target_precision=TARGET_PRECISION,
        cut_candidates=candidates(sets.dev, vectors, adjust),
        use=FEATURES,
    )


#: Per held-out set, hits a judge on top of the policy takes back: each pair of `test`,
#: `writer` and `mrpc` alone, and QQP's candidates as a cache (in the order of the
#: `qqp_found` passed to `points`).
Vetoes = Mapping[str, np.ndarray]


def points(
    sets: Sets,
    vectors: data.Vectors,
    policy: HitPolicy,
    cuts: Sequence[float],
    adjust: Adjust = unchanged,
    *,
    qqp_found: Sequence[Candidate] | None = None,
    vetoes: Vetoes | None = None,
    label: str = "",
) -> list[dict[str, Any]]:
    """`policy` at each of `cuts`, measured on the held-out sets (hits in `vetoes` taken
    back; QQP's candidates found here unless given). Prints each point after `label`."""
    if qqp_found is None:
        qqp_found = candidates(sets.qqp, vectors, adjust)
    held_out = {"test": sets.test, "writer": sets.writer, "mrpc": sets.mrpc}
    found: list[dict[str, Any]] = []
    for cut in cuts:
        at = with_cut(policy, float(cut))
        hits = {name: pair_hits(pairs, vectors, adjust, at) for name, pairs in held_out.items()}
        hits["qqp"] = cache_hits(qqp_found, at)
        if vetoes is not None:
            hits = {name: hit & ~vetoes[name] for name, hit in hits.items()}
        p: dict[str, Any] = {"cut": round(float(cut), 3)}
        p |= {name: pair_rates(pairs, hits[name]) for name, pairs in held_out.items()}
        p["qqp"] = cache_rates(sets.qqp, qqp_found, hits["qqp"])
        found.append(p)
        print(
            f"{label} cut={p['cut']:.3f}  test kept {p['test']['kept']:5.1f} served "
            f"{p['test']['served']:5.1f} | writer {p['writer']['kept']:5.1f} / "
            f"{p['writer']['served']:5.1f} | qqp recall {p['qqp']['recall']:.3f} wrong "
            f"{p['qqp']['wrong']:5.2f} | mrpc {p['mrpc']['kept']:5.1f} / "
            f"{p['mrpc']['served']:5.1f}",
            flush=True,
        )
    return found


def refitted(
    sets: Sets,
    vectors: data.Vectors,
    adjust: Adjust = unchanged,
    *,
    cuts: Sequence[float] = CUTS,
    label: str = "",
) -> dict[str, Any]:
    """The policy fitted as shipped on these vectors (the similarity adjusted): its vetoes,
    its cut, and its points, the fitted one first, then one per cut of `cuts`. Prints each
    point after `label`."""
    policy, seen = fitted(sets, vectors, adjust)
    swept = points(sets, vectors, policy, [seen["cut"], *cuts], adjust, label=label)
    return {"vetoes": seen["vetoes"], "fitted_cut": seen["cut"], "points": swept}


def curve_at(points: list[dict], name: str, x: str, y: str, at: float) -> float | None:
    """`y` on set `name` where `x` equals `at` along the swept `points` (linear between
    them); None outside the sweep."""
    curve = sorted((p[name][x], p[name][y]) for p in points)
    xs, ys = [c[0] for c in curve], [c[1] for c in curve]
    if not xs[0] <= at <= xs[-1]:
        return None
    return round(float(np.interp(at, xs, ys)), 2)


def versus(fitted: dict, reference: list[dict], name: str) -> dict[str, dict]:
    """A fitted point against the `reference` judge's swept curve at equal kept (or
    recall): the reference's figure there is `{name}_{y}`."""
    return {
        s: {
            x: fitted[s][x],
            y: fitted[s][y],
            f"{name}_{y}": curve_at(reference, s, x, y, fitted[s][x]),
        }
        for s, x, y in AXES
    }
