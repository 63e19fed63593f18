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
the classifier fitted on each of SOURCES, the policy is refitted as the shipped one is and
measured on the test split, another writer's pairs, QQP and MRPC (`bench/refit.py`).

Each blend's fitted point is set against the cosine's swept curve at equal kept (equal
recall on QQP): `versus_cosine`. Writes bench/results/pair_vectors.json.

    SEMCACHE_BENCH_EMBEDDER=HOST:PORT   a running embedder of the tuned model (default: a
                                        private one)
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from bench import refit
from bench.embed import machine
from bench.refit import ROOT, Adjust
from semcache.evaluation import data, embeddings

RESULTS = ROOT / "bench" / "results"
#: The blend weights measured (0: the cosine alone).
WEIGHTS = (0.0, 0.25, 0.5)
#: What the classifier is fitted on: the train split, and with STS-B train (human-written,
#: CC BY-SA 4.0, which the project may train on) beside it.
SOURCES = ("train", "train+stsb")
#: The classifier's inverse L2 strength, on standardised inputs.
C = 0.001
#: Recalls at which the classifier alone is set against the cosine alone.
RECALLS = (0.5, 0.8)


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
            f"{rule} at {recall:.0%}": refit.served_at_kept(score, label, recall)
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


def main() -> None:
    sets = refit.Sets.load()
    stsb = data.load_pairs(ROOT / "data" / "pairs" / "stsb-train.jsonl")
    extra = {"train": [], "train+stsb": stsb}
    texts = list(dict.fromkeys([*sets.texts(), *data.texts_of(stsb)]))
    vectors = embeddings.embed_texts_sync(
        texts, os.environ.get("SEMCACHE_BENCH_EMBEDDER"), progress=embeddings.ProgressLine()
    )
    held_out = {"test": sets.test, "writer": sets.writer, "qqp": sets.qqp, "mrpc": sets.mrpc}
    classifiers = {
        source: fitted_classifier([*sets.train, *extra[source]], vectors) for source in SOURCES
    }
    by_itself = {source: alone(classifiers[source], held_out, vectors) for source in SOURCES}
    print(f"label-0 pairs passing, each rule alone: {by_itself}")
    blends: dict[str, dict] = {}
    cosine_points: list[dict] = []
    blended = [("cosine", 0.0), *((source, w) for source in SOURCES for w in WEIGHTS if w)]
    for source, w in blended:
        adjust = blend(classifiers.get(source), sets.train, vectors, w)
        found = refit.refitted(sets, vectors, adjust, label=f"{source} w={w:<4}")
        points = found["points"]
        if w == 0:
            cosine_points = points  # the cosine alone comes first
        comparison = refit.versus(points[0], cosine_points, "cosine")
        print(f"{source} w={w} at its fitted cut, against the cosine: {comparison}")
        blends[source if w == 0 else f"{source} w={w}"] = found | {"versus_cosine": comparison}
    results = {
        "machine": machine(),
        "model": vectors.model,
        "alone": by_itself,
        "blends": blends,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "pair_vectors.json").write_text(json.dumps(results, indent=1) + "\n")
