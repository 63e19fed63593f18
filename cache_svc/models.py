"""Which embedding model a shard's stored vectors should be in.

Every embedder answer names the service's current model and when it was built. During a
rolling upgrade two versions answer side by side, each naming its own; the shard moves to
the newer build (by build time) among those seen within `window` seconds, so it neither
flaps between the two nor stays on a model whose last server is gone (a rollback: the newer
one stops being seen, and the target falls back after the window).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ModelTracker:
    window: float = 60.0
    #: model id -> (built, last seen as a service's current model)
    _seen: dict[str, tuple[float, float]] = field(default_factory=dict)
    #: model id -> last time a vector of it arrived
    _vectors: dict[str, float] = field(default_factory=dict)

    def observe(self, current: str, built: float, vector_model: str, now: float) -> None:
        """An answer: the service's current model (and its build time), and the model of
        the vectors it sent."""
        if current:
            self._seen[current] = (built, now)
        self._vectors[vector_model] = now

    def served(self, model: str, now: float) -> bool:
        """Whether vectors of `model` still arrive (one did within the window)."""
        return now - self._vectors.get(model, -float("inf")) <= self.window

    def target(self, now: float) -> str:
        """The model new and stored vectors should be in; "" before any answer."""
        recent = {m: built for m, (built, seen) in self._seen.items() if now - seen <= self.window}
        pool = recent or {m: built for m, (built, _) in self._seen.items()}
        if not pool:
            return ""
        return max(pool, key=lambda m: (pool[m], m))
