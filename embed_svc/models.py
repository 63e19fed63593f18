"""The models one embedding service holds: the current one and, after a switch, the previous.

Vectors of two models are never comparable, so callers name the model they need (the one
their stored vectors are of). After a switch the previous model keeps answering those
callers while they re-embed what they store; the current one answers everyone else. Each
model has its own MicroBatcher (a batch runs one model).

`ModelWatcher` makes the switch without a restart: when the service runs the default model
(no model directory configured) and a better one gets built (the tuned recipe, after the
stock one), it loads it and makes it current.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from embed_svc import metrics
from embed_svc.batcher import MicroBatcher
from embed_svc.build import recipe
from embed_svc.model import EmbeddingModel, OnnxEmbedder
from semcache.runtime.periodic import Periodic

log = logging.getLogger(__name__)

#: Models held at once: the current one and the one before it.
MAX_MODELS = 2


@dataclass(frozen=True, slots=True)
class Served:
    model: EmbeddingModel
    batcher: MicroBatcher


class ModelSet:
    """model id -> its batcher; the newest added is current."""

    def __init__(self, make_batcher: Callable[[EmbeddingModel], MicroBatcher]) -> None:
        self._make_batcher = make_batcher
        self._served: dict[str, Served] = {}
        self._current: Served | None = None

    @property
    def current(self) -> Served:
        if self._current is None:
            raise RuntimeError("no model loaded")
        return self._current

    def ids(self) -> list[str]:
        return list(self._served)

    def pick(self, model_id: str) -> Served:
        """The named model when held, else the current one."""
        return self._served.get(model_id) or self.current

    async def add(self, model: EmbeddingModel) -> None:
        """Makes `model` current; the oldest beyond MAX_MODELS is closed (its queued texts
        fail with UNAVAILABLE, which callers retry on the current model)."""
        batcher = self._make_batcher(model)
        batcher.start()
        self._served[model.model_id] = self._current = Served(model, batcher)
        metrics.MODEL_INFO.labels(model.model_id).set(1)
        while len(self._served) > MAX_MODELS:
            oldest = next(iter(self._served))
            metrics.MODEL_INFO.labels(oldest).set(0)
            await self._served.pop(oldest).batcher.aclose()

    async def aclose(self) -> None:
        for served in self._served.values():
            await served.batcher.aclose()
        self._served.clear()


async def load_model(model_dir: Path | None) -> OnnxEmbedder:
    """Loads a model off the event loop and pays its first run's set-up (~10 ms) there too."""
    model = await asyncio.to_thread(OnnxEmbedder, model_dir)
    await asyncio.to_thread(model.embed, ["warm-up"])
    return model


class ModelWatcher:
    """Polls for a better default model (the tuned one once built) and switches to it."""

    def __init__(self, models: ModelSet, interval: float = 10.0) -> None:
        self.models = models
        self.periodic = Periodic(self.check, interval, "model-watcher")

    async def check(self) -> bool:
        """Switches when the default model is a complete build not held yet; True if so."""
        # Off the loop: finding it hashes the tuned recipe's inputs (a few MB of data).
        model_dir = await asyncio.to_thread(recipe.default_model_dir)
        if model_dir == getattr(self.models.current.model, "model_dir", None):
            return False
        if not recipe.is_complete(model_dir):
            return False
        model = await load_model(model_dir)
        if model.model_id in self.models.ids():
            return False
        await self.models.add(model)
        log.info("switched model", extra={"model": model.model_id})
        return True
