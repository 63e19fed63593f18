"""Would a classifier over the two vectors pay on top of the tuned cosine? (`python -m bench
pair_vectors`)

A shard holds both vectors of a candidate pair, so a classifier over them costs no second
transformer pass: logistic regression on the cosine, |u - v| and u * v elementwise (the
standardised 769 numbers of the classic sentence-pair classifier), fitted on the project's
train split (and again with STS-B train beside it).
Alone it learns the writing style of its data (`alone` in the results: far fewer of the
test split's traps pass at equal recall, far more of Quora's and MRPC's false pairs), so
here it is only combined with the cosine: the similarity the policy reads becomes

    (1 - w) * cosine + w * min(cosine, the classifier's score on the cosine's scale)

for the nearest entry (it can only lower a similarity, so the search floor still holds;
the runner-up moves by as much, so the margin stays the cosine's). For w in WEIGHTS and
the classifier fitted on each of SOURCES, the policy is refitted exactly as `semcache
calibrate` fits the shipped one (train split, cut on dev, the shipped features), its cut
then swept, and each point measured on:

- the project's test split (each pair alone), kept and traps served;
- `tests/data/pairs.jsonl` (another writer's traps and paraphrases), each pair alone;
- QQP dev's held-out fifth as a cache (every `a` cached, every distinct `b` asked: recall
  = right hits / queries with a right answer cached, wrong = wrong hits / queries), and
  MRPC train each pair alone (both human-written; measured, never fitted on).

Each blend's fitted point is set against the cosine's swept curve at equal kept (equal
recall on QQP): `versus_cosine`. Writes bench/results/pair_vectors.json.

    SEMCACHE_BENCH_EMBEDDER=HOST:PORT   a running embedder of the tuned model (default: a
                                        private one)
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from bench.embed import machine
from semcache.evaluation import calibrate, data, embeddings, metrics
from semcache.evaluation.metrics import Candidate
from semcache.quality.policy import HitPolicy

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SHARED = ROOT.parent / "shared" / "data"
#: The blend weights measured (0: the cosine alone).
WEIGHTS = (0.0, 0.25, 0.5)
#: What the classifier is fitted on: the train split, and with STS-B train (human-written,
#: CC BY-SA 4.0, which the project may train on) beside it.
SOURCES = ("train", "train+stsb")
#: The classifier's inverse L2 strength, on standardised inputs.
C = 0.001
#: What the shipped tuned policy is fitted with (docs/quality.md).
FEATURES = [
    "similarity",
    "margin",
    *(f"guard_{g}" for g in ("negation", "antonym", "number", "unit", "date", "entity")),
    *(f"guard_{g}" for g in ("order", "swap")),
]
FLOOR = 0.7
TARGET_PRECISION = 0.9
CUTS = np.round(np.linspace(0.3, 0.95, 14), 2)
#: Recalls at which the classifier alone is set against the cosine alone.
RECALLS = (0.5, 0.8)

Adjust = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def pair_inputs(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.hstack([np.einsum("ij,ij->i", u, v)[:, None], np.abs(u - v), u * v])


def fitted_classifier(train: Sequence[data.Pair], vectors: data.Vectors) -> Any:
    u, v = vectors.of([p.a for p in train]), vectors.of([p.b for p in train])
    classifier = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=3000))
    return classifier.fit(pair_inputs(u, v), [p.label == 1 for p in train])


def alone(
    classifier: Any, sets: Mapping[str, Sequence[data.Pair]], vectors: data.Vectors
) -> dict[str, dict]:
    """Each pair alone, the classifier's score and the cosine each as the only rule: the
    share of label-0 pairs scoring at or above the threshold that keeps RECALLS of the
    label-1 pairs."""
    found: dict[str, dict] = {}
    for name, pairs in sets.items():
        u, v = vectors.of([p.a for p in pairs]), vectors.of([p.b for p in pairs])
        label = np.array([p.label == 1 for p in pairs])
        scores = {
            "cosine": np.einsum("ij,ij->i", u, v),
            "classifier": classifier.decision_function(pair_inputs(u, v)),
        }
        found[name] = {
            f"{rule} at {recall:.0%}": round(
                100 * float((score[~label] >= np.quantile(score[label], 1 - recall)).mean()), 1
            )
            for rule, score in scores.items()
            for recall in RECALLS
        }
    return found


def blend(classifier: Any, train: Sequence[data.Pair], vectors: data.Vectors, w: float) -> Adjust:
    """The adjusted similarity for blend weight `w`, the classifier's score put on the
    cosine's scale by the train split's scores."""
    if w == 0:
        return lambda similarity, u, v: similarity
    u, v = vectors.of([p.a for p in train]), vectors.of([p.b for p in train])
    cosine, score = np.einsum("ij,ij->i", u, v), classifier.decision_function(pair_inputs(u, v))

    def adjust(similarity: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        z = (classifier.decision_function(pair_inputs(u, v)) - score.mean()) / score.std()
        on_cosine_scale = cosine.mean() + cosine.std() * z
        return (1 - w) * similarity + w * np.minimum(similarity, on_cosine_scale)

    return adjust


def candidates(
    pairs: Sequence[data.Pair], vectors: data.Vectors, adjust: Adjust
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


def each_pair(
    pairs: Sequence[data.Pair], vectors: data.Vectors, adjust: Adjust, policy: HitPolicy
) -> dict[str, float]:
    u, v = vectors.of([p.a for p in pairs]), vectors.of([p.b for p in pairs])
    similarity = adjust(np.einsum("ij,ij->i", u, v), u, v)
    hit = np.array(
        [
            policy.decide(p.b, p.a, float(s), category=p.category).hit
            for p, s in zip(pairs, similarity, strict=True)
        ]
    )
    label = np.array([p.label == 1 for p in pairs])
    kinds = np.array([p.kind for p in pairs])
    row = {"kept": 100 * hit[label].mean(), "served": 100 * hit[~label].mean()}
    row |= {k: 100 * hit[kinds == k].mean() for k in sorted(set(kinds) - {""})}
    return {k: round(float(x), 1) for k, x in row.items()}


def as_cache(
    pairs: Sequence[data.Pair], found: Sequence[Candidate], policy: HitPolicy
) -> dict[str, float]:
    answerable = {p.b for p in pairs if p.label == 1}
    hits = [
        c
        for c in found
        if policy.decide(c.query, c.cached, c.similarity, second=c.second, category=c.category).hit
    ]
    right = sum(c.right for c in hits)
    return {
        "recall": round(right / len(answerable), 3),
        "wrong": round(100 * (len(hits) - right) / len(found), 2),
    }


def with_cut(policy: HitPolicy, cut: float) -> HitPolicy:
    assert policy.model is not None
    return dataclasses.replace(policy, model=dataclasses.replace(policy.model, cut=cut, cuts={}))


#: Per set, the figure held equal and the one compared: (set, x, y).
AXES = (
    ("test", "kept", "served"),
    ("writer", "kept", "served"),
    ("mrpc", "kept", "served"),
    ("qqp", "recall", "wrong"),
)


def cosine_at(points: list[dict], name: str, x: str, y: str, at: float) -> float | None:
    """The cosine's `y` on set `name` where its `x` equals `at` (linear between its swept
    points); None outside the sweep."""
    curve = sorted((p[name][x], p[name][y]) for p in points)
    xs, ys = [c[0] for c in curve], [c[1] for c in curve]
    if not xs[0] <= at <= xs[-1]:
        return None
    return round(float(np.interp(at, xs, ys)), 2)


def versus_cosine(fitted: dict, cosine_points: list[dict]) -> dict[str, dict]:
    """The fitted point of a blend against the cosine's curve at equal kept (or recall)."""
    return {
        name: {
            x: fitted[name][x],
            y: fitted[name][y],
            f"cosine_{y}": cosine_at(cosine_points, name, x, y, fitted[name][x]),
        }
        for name, x, y in AXES
    }


def main() -> None:
    groups = data.load_pairs(ROOT / "data" / "pairs" / "groups")
    train, dev, test = (data.select(groups, which) for which in ("train", "dev", "test"))
    writer = data.load_pairs(ROOT / "tests" / "data" / "pairs.jsonl")
    qqp = data.select(data.load_pairs(SHARED / "qqp-dev.jsonl"), "test")
    mrpc = data.load_pairs(SHARED / "mrpc-train.jsonl")
    extra = {
        "train": [],
        "train+stsb": data.load_pairs(ROOT / "data" / "pairs" / "stsb-train.jsonl"),
    }
    every = (groups, writer, qqp, mrpc, extra["train+stsb"])
    texts = list(dict.fromkeys(t for s in every for t in data.texts_of(s)))
    vectors = embeddings.embed_texts_sync(
        texts, os.environ.get("SEMCACHE_BENCH_EMBEDDER"), progress=embeddings.ProgressLine()
    )
    held_out = {"test": test, "writer": writer, "qqp": qqp, "mrpc": mrpc}
    classifiers = {
        source: fitted_classifier([*train, *extra[source]], vectors) for source in SOURCES
    }
    by_itself = {source: alone(classifiers[source], held_out, vectors) for source in SOURCES}
    print(f"label-0 pairs passing, each rule alone: {by_itself}")
    base = HitPolicy(thresholds={"default": FLOOR})
    blends: dict[str, dict] = {}
    cosine_points: list[dict] = []
    blended = [("cosine", 0.0), *((source, w) for source in SOURCES for w in WEIGHTS if w)]
    for source, w in blended:
        adjust = blend(classifiers.get(source), train, vectors, w)
        policy, seen = calibrate.calibrate_candidates(
            candidates(train, vectors, adjust),
            base=base,
            target_precision=TARGET_PRECISION,
            cut_candidates=candidates(dev, vectors, adjust),
            use=FEATURES,
        )
        qqp_found = candidates(qqp, vectors, adjust)
        points: list[dict[str, Any]] = []
        for cut in [seen["cut"], *CUTS]:
            at = with_cut(policy, float(cut))
            points.append(
                {
                    "cut": round(float(cut), 3),
                    "test": each_pair(test, vectors, adjust, at),
                    "writer": each_pair(writer, vectors, adjust, at),
                    "mrpc": each_pair(mrpc, vectors, adjust, at),
                    "qqp": as_cache(qqp, qqp_found, at),
                }
            )
            p = points[-1]
            print(
                f"{source} w={w:<4} cut={p['cut']:.3f}  test kept {p['test']['kept']:5.1f} served "
                f"{p['test']['served']:5.1f} | writer {p['writer']['kept']:5.1f} / "
                f"{p['writer']['served']:5.1f} | qqp recall {p['qqp']['recall']:.3f} wrong "
                f"{p['qqp']['wrong']:5.2f} | mrpc {p['mrpc']['kept']:5.1f} / "
                f"{p['mrpc']['served']:5.1f}",
                flush=True,
            )
        if w == 0:
            cosine_points = points  # the cosine alone comes first
        comparison = versus_cosine(points[0], cosine_points)
        print(f"{source} w={w} at its fitted cut, against the cosine: {comparison}")
        blends[source if w == 0 else f"{source} w={w}"] = {
            "vetoes": seen["vetoes"],
            "fitted_cut": seen["cut"],
            "versus_cosine": comparison,
            "points": points,
        }
    results = {
        "machine": machine(),
        "model": vectors.model,
        "alone": by_itself,
        "blends": blends,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "pair_vectors.json").write_text(json.dumps(results, indent=1) + "\n")
