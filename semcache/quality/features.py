"""Features of a (query, nearest cached prompt) pair, for the calibrated hit model."""

from __future__ import annotations

from semcache.quality import guards

FEATURES = (
    "similarity",
    "margin",  # similarity minus the second-best candidate's (MARGIN_UNKNOWN without one)
    "length_ratio",  # shorter / longer, in words
    "word_overlap",  # Jaccard of the content words
    *(f"guard_{name}" for name in guards.GUARDS),
)
#: The margin used when there is no second candidate (a namespace of one entry): large,
#: since nothing else competes.
MARGIN_UNKNOWN = 0.2


def features(query: str, cached: str, similarity: float, second: float | None,
             fired: tuple[str, ...] | None = None) -> tuple[float, ...]:  # fmt: skip
    a, b = guards.read(query), guards.read(cached)
    if fired is None:
        fired = guards.signals(a, b)
    words_a, words_b = set(a.content), set(b.content)
    union = words_a | words_b
    longer = max(len(a.words), len(b.words)) or 1
    return (
        similarity,
        MARGIN_UNKNOWN if second is None else similarity - second,
        min(len(a.words), len(b.words)) / longer,
        len(words_a & words_b) / len(union) if union else 1.0,
        *(1.0 if name in fired else 0.0 for name in guards.GUARDS),
    )
