"""The shard's client of `semcache.v1.Embedder`, with a small cache of recent vectors.

A prompt that semantically hit is asked again verbatim more often than not (popular
questions), and only the stored prompts are exact-matched: remembering the vectors of recent
texts spares those repeats the embedding call, most of a semantic hit's time.

Every vector comes with the id of the model that made it (vectors of two models are never
compared), and every answer tells the `ModelTracker` which model the embedders serve now.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from cache_svc import metrics
from cache_svc.models import ModelTracker
from semcache.mux import STREAM_MAX_AGE_SECONDS, RenewingStream, StreamClosedError, status_code
from semcache.server import CHANNEL_OPTIONS
from semcache.tls import TlsFiles, open_channel
from semcache.v1 import embedder_pb2, embedder_pb2_grpc


class EmbedderUnavailableError(Exception):
    """The embedder could not embed the text (down, overloaded or too slow)."""


#: What `refresh_models` embeds: any text does, the answer names the current model.
MODEL_PROBE_TEXT = "semcache"
#: Longer texts are not kept: they rarely repeat and would dominate the cache's memory.
MAX_CACHED_CHARS = 2048


@dataclass(frozen=True, slots=True)
class Vector:
    """A text's embedding and the id of the model that made it."""

    values: np.ndarray  # float32, L2-normalised
    model: str


class EmbedderClient:
    """`embed(text, model)` through the embedder; the last `cache_entries` texts' vectors (up
    to MAX_CACHED_CHARS each) are kept, least recently used out first. 0 turns the cache off.

    Texts travel one per request on an `EmbedStream` call (`semcache.mux`), renewed every
    few seconds: a new call goes to the next embedder the channel's round_robin picks, so a
    stream never pins a shard to one pod. Texts are not packed into shared requests: an
    answer would then wait for the slowest text of its request, and the embedder batches
    texts from all its requests anyway.
    """

    def __init__(self, address: str, timeout: float = 2.0, tls: TlsFiles | None = None,
                 cache_entries: int = 4096,
                 stream_seconds: float = STREAM_MAX_AGE_SECONDS) -> None:  # fmt: skip
        self.address = address
        self.timeout = timeout
        self.cache_entries = cache_entries
        self.models = ModelTracker()
        self._last_answer = -float("inf")
        self._cache: OrderedDict[tuple[str, str], Vector] = OrderedDict()
        # round_robin: every address the name resolves to (all the pods of a headless
        # Service) takes calls, not only the first.
        options = [*CHANNEL_OPTIONS, ("grpc.lb_policy_name", "round_robin")]
        self._channel = open_channel(address, tls, options)
        stub = embedder_pb2_grpc.EmbedderStub(self._channel)
        self._stream = RenewingStream(stub.EmbedStream, max_age=stream_seconds)
        self.healthy = True

    async def embed(self, text: str, model: str = "") -> Vector:
        """The text's vector in `model` (empty: the embedder's current model). When no
        embedder holds that model any more, the vector is of another: check `.model`."""
        key = (model or self.models.target(time.monotonic()), text)
        vector = self._cache.get(key)
        if vector is not None:
            self._cache.move_to_end(key)
            metrics.VECTOR_CACHE.labels("hit").inc()
            return vector
        vector = await self._fetch(text, model)
        if self.cache_entries and len(text) <= MAX_CACHED_CHARS:
            metrics.VECTOR_CACHE.labels("miss").inc()
            self._cache[(vector.model, text)] = vector
            if len(self._cache) > self.cache_entries:
                self._cache.popitem(last=False)
        return vector

    async def refresh_models(self, quiet_for: float) -> None:
        """Asks the embedder which model is current when no answer came for `quiet_for`
        seconds: an idle shard still learns of a new model (and of each embedder behind its
        address, as its stream moves from one to the next)."""
        if time.monotonic() - self._last_answer >= quiet_for:
            with contextlib.suppress(EmbedderUnavailableError):
                await self._fetch(MODEL_PROBE_TEXT, "")

    async def _fetch(self, text: str, model: str) -> Vector:
        request = embedder_pb2.EmbedStreamRequest(
            request=embedder_pb2.EmbedRequest(texts=[text], model=model)
        )
        try:
            async with asyncio.timeout(self.timeout):
                _, answer = self._stream.current().send(request)
                reply = await answer
        except (StreamClosedError, TimeoutError) as e:
            self._failed()
            raise EmbedderUnavailableError(str(e) or f"no vector within {self.timeout:g} s") from e
        if reply.HasField("error"):
            self._failed()
            code = status_code(reply.error.code).name
            raise EmbedderUnavailableError(f"{code}: {reply.error.message}")
        self.healthy = True
        self._last_answer = time.monotonic()
        response = reply.response
        self.models.observe(response.current_model, response.current_model_built,
                            response.model, time.monotonic())  # fmt: skip
        return Vector(np.frombuffer(response.embeddings[0].vector, dtype="<f4"), response.model)

    def _failed(self) -> None:
        metrics.EMBEDDER_ERRORS.inc()
        self.healthy = False

    async def aclose(self) -> None:
        await self._stream.aclose()
        await self._channel.close()
