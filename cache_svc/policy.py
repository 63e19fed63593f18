"""HitPolicy: decides whether the nearest cached prompt is close enough to reuse its answer.

This is the one place hit decisions are made. Today: one configured cosine threshold, and a
per-request `min_similarity` that can only make it stricter. Categories, guards and
calibration extend this class, not its callers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Decision:
    hit: bool
    threshold: float
    category: str


class HitPolicy:
    DEFAULT_CATEGORY = "default"

    def __init__(self, threshold: float = 0.9) -> None:
        if not (math.isfinite(threshold) and -1 <= threshold <= 1):
            raise ValueError(f"threshold: must be a cosine similarity in [-1, 1], got {threshold}")
        self.threshold = threshold

    def threshold_for(self, category: str, min_similarity: float | None) -> float:
        if min_similarity is None:
            return self.threshold
        return max(self.threshold, min_similarity)  # a request can only be stricter

    def decide(self, similarity: float, *, category: str = "",
               min_similarity: float | None = None) -> Decision:  # fmt: skip
        category = category or self.DEFAULT_CATEGORY
        threshold = self.threshold_for(category, min_similarity)
        return Decision(hit=similarity >= threshold, threshold=threshold, category=category)
