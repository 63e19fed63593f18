"""Features of a (query, nearest cached prompt) pair, for the calibrated hit model."""

from __future__ import annotations

import math

from semcache.quality import guards

FEATURES = (
    "similarity",
    "margin",  # similarity minus the second-best candidate's; NaN without one
    "length_ratio",  # shorter / longer, in words
    "word_overlap",  # Jaccard of the content words
    "only_query",  # content words of the query the cached prompt lacks
    "only_cached",  # and the other way round
    "substitution",  # 1-2 words swapped for 1-2 others: "learn French" vs "learn Spanish"
    *(f"guard_{name}" for name in guards.GUARDS),
)


def features(
    query: str | guards.Text,
    cached: str | guards.Text,
    similarity: float,
    second: float | None,
    fired: tuple[str, ...] | None = None,
) -> tuple[float, ...]:
    """The feature vector; an unknown margin (a namespace of one entry) is NaN, which the
    model reads as the average margin, so it neither helps nor hurts the candidate."""
    a = guards.read(query) if isinstance(query, str) else query
    b = guards.read(cached) if isinstance(cached, str) else cached
    if fired is None:
        fired = guards.signals(a, b)
    words_a, words_b = set(a.content), set(b.content)
    union = words_a | words_b
    only_a, only_b = len(words_a - words_b), len(words_b - words_a)
    longer = max(len(a.words), len(b.words)) or 1
    return (
        similarity,
        math.nan if second is None else similarity - second,
        min(len(a.words), len(b.words)) / longer,
        len(words_a & words_b) / len(union) if union else 1.0,
        float(only_a),
        float(only_b),
        1.0 if 1 <= only_a <= 2 and 1 <= only_b <= 2 else 0.0,
        *(1.0 if name in fired else 0.0 for name in guards.GUARDS),
    )
