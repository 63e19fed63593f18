"""Warm-up from a query log: which prompts to ask the LLM for before users do.

The logged prompts of one scope, with how often each was asked, are clustered by meaning
(k-means over their embeddings, weighted by count: scikit-learn's, not a hand-written one);
each cluster is a question users ask in several wordings. Its representative is the wording
asked most often when one was asked more than once, else the one nearest the cluster's
centre. Clusters come out most-asked first, so a budget of LLM calls goes where the traffic
is. Pure: texts, vectors and counts in, a plan out (`semcache warm` does the I/O).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

#: Clusters per call of budget: a question whose wordings fall into two clusters costs one
#: call, the other pick then hits (free), and the budget goes on to the next question.
CLUSTERS_PER_CALL = 2


@dataclass(frozen=True, slots=True)
class Pick:
    prompt: str
    asked: int  # requests of the log in its cluster
    share: float  # of the log's requests
    wordings: int  # distinct prompts in its cluster
    reason: str  # why this prompt speaks for its cluster


def count_prompts(prompts: Iterable[str]) -> Counter[str]:
    """How often each distinct prompt was asked (surrounding whitespace ignored)."""
    return Counter(p.strip() for p in prompts if p.strip())


def plan(counts: Counter[str], vectors: np.ndarray, budget: int, seed: int = 0) -> list[Pick]:
    """Representatives of the clusters of the distinct prompts (`counts`' keys, in order,
    with their L2-normalised `vectors`), most-asked cluster first; at most
    `CLUSTERS_PER_CALL * budget` of them."""
    from sklearn.cluster import KMeans  # scikit-learn only where warming runs

    prompts = list(counts)
    if budget < 1 or not prompts:
        return []
    if len(vectors) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(vectors)} vectors")
    weights = np.array([counts[p] for p in prompts], dtype=np.float64)
    clusters = min(len(prompts), CLUSTERS_PER_CALL * budget)
    model = KMeans(n_clusters=clusters, n_init=3, random_state=seed)
    labels = model.fit_predict(vectors, sample_weight=weights)
    total = weights.sum()
    picks = []
    for cluster in range(clusters):
        members = np.flatnonzero(labels == cluster)
        if not len(members):
            continue
        asked = int(weights[members].sum())
        top = members[np.argmax(weights[members])]
        if weights[top] > 1:
            reason = f"most asked: {int(weights[top])} of its cluster's {asked} requests"
        else:
            centre = model.cluster_centers_[cluster]
            top = members[np.argmax(vectors[members] @ centre)]
            reason = f"nearest the centre of {len(members)} wordings asked once each"
        picks.append(Pick(prompts[top], asked, asked / total, len(members), reason))
    picks.sort(key=lambda p: (-p.asked, p.prompt))
    return picks
