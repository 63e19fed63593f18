"""The shard's client of `semcache.v1.Embedder`, with a small cache of recent vectors.

A prompt that semantically hit is asked again verbatim more often than not (popular
questions), and only the stored prompts are exact-matched: remembering the vectors of recent
texts spares those repeats the embedding call, most of a semantic hit's time.
"""

from __future__ import annotations

from collections import OrderedDict

import grpc
import numpy as np

from cache_svc import metrics
from semcache.server import CHANNEL_OPTIONS
from semcache.tls import TlsFiles, open_channel
from semcache.v1 import embedder_pb2, embedder_pb2_grpc


class EmbedderUnavailableError(Exception):
    """The embedder could not embed the text (down, overloaded or too slow)."""


#: Longer texts are not kept: they rarely repeat and would dominate the cache's memory.
MAX_CACHED_CHARS = 2048


class EmbedderClient:
    """`embed(text)` through the embedder; the last `cache_entries` texts' vectors (up to
    MAX_CACHED_CHARS each) are kept, least recently used out first. 0 turns the cache off."""

    def __init__(self, address: str, timeout: float = 2.0, tls: TlsFiles | None = None,
                 cache_entries: int = 4096) -> None:  # fmt: skip
        self.address = address
        self.timeout = timeout
        self.cache_entries = cache_entries
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        # round_robin: every address the name resolves to (all the pods of a headless
        # Service) takes calls, not only the first.
        options = [*CHANNEL_OPTIONS, ("grpc.lb_policy_name", "round_robin")]
        self._channel = open_channel(address, tls, options)
        self._stub = embedder_pb2_grpc.EmbedderStub(self._channel)
        self.healthy = True

    async def embed(self, text: str) -> np.ndarray:
        vector = self._cache.get(text)
        if vector is not None:
            self._cache.move_to_end(text)
            metrics.VECTOR_CACHE.labels("hit").inc()
            return vector
        vector = await self._fetch(text)
        if self.cache_entries and len(text) <= MAX_CACHED_CHARS:
            metrics.VECTOR_CACHE.labels("miss").inc()
            self._cache[text] = vector
            if len(self._cache) > self.cache_entries:
                self._cache.popitem(last=False)
        return vector

    async def _fetch(self, text: str) -> np.ndarray:
        try:
            reply = await self._stub.Embed(embedder_pb2.EmbedRequest(texts=[text]),
                                           timeout=self.timeout)  # fmt: skip
        except grpc.aio.AioRpcError as e:
            metrics.EMBEDDER_ERRORS.inc()
            self.healthy = False
            raise EmbedderUnavailableError(f"{e.code().name}: {e.details()}") from e
        self.healthy = True
        return np.frombuffer(reply.embeddings[0].vector, dtype="<f4")

    async def aclose(self) -> None:
        await self._channel.close()
