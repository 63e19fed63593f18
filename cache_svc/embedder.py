"""The shard's client of `semcache.v1.Embedder`, with a small cache of recent vectors.

A prompt that semantically hit is asked again verbatim more often than not (popular
questions), and only the stored prompts are exact-matched: remembering the vectors of recent
texts spares those repeats the embedding call, most of a semantic hit's time.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict

import numpy as np

from cache_svc import metrics
from cache_svc.embed_stream import EmbedRefusedError, EmbedStream, StreamClosedError
from semcache.server import CHANNEL_OPTIONS
from semcache.tls import TlsFiles, open_channel
from semcache.v1 import embedder_pb2_grpc


class EmbedderUnavailableError(Exception):
    """The embedder could not embed the text (down, overloaded or too slow)."""


#: Longer texts are not kept: they rarely repeat and would dominate the cache's memory.
MAX_CACHED_CHARS = 2048


class EmbedderClient:
    """`embed(text)` through the embedder; the last `cache_entries` texts' vectors (up to
    MAX_CACHED_CHARS each) are kept, least recently used out first. 0 turns the cache off.

    Texts travel on one `EmbedStream` call (see `EmbedStream`), replaced by a new one when it
    ends and every `stream_seconds`: a new call goes to the next embedder the channel's
    round_robin picks, so a stream never pins a shard to one pod, and it is renewed before
    the embedder's connection age limit would cut it.
    """

    def __init__(self, address: str, timeout: float = 2.0, tls: TlsFiles | None = None,
                 cache_entries: int = 4096, stream_seconds: float = 20.0) -> None:  # fmt: skip
        self.address = address
        self.timeout = timeout
        self.cache_entries = cache_entries
        self.stream_seconds = stream_seconds
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        # round_robin: every address the name resolves to (all the pods of a headless
        # Service) takes calls, not only the first.
        options = [*CHANNEL_OPTIONS, ("grpc.lb_policy_name", "round_robin")]
        self._channel = open_channel(address, tls, options)
        self._stub = embedder_pb2_grpc.EmbedderStub(self._channel)
        self._stream: EmbedStream | None = None
        self._finishing: set[EmbedStream] = set()
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

    def _open_stream(self) -> EmbedStream:
        stream = self._stream
        if stream is not None and stream.usable:
            if time.monotonic() - stream.opened < self.stream_seconds:
                return stream
            stream.finish()  # what it carries still comes back
            self._finishing.add(stream)
        self._finishing = {s for s in self._finishing if not s.ended}
        self._stream = EmbedStream(self._stub)
        return self._stream

    async def _fetch(self, text: str) -> np.ndarray:
        try:
            async with asyncio.timeout(self.timeout):
                vector = await self._open_stream().embed(text)
        except (StreamClosedError, EmbedRefusedError, TimeoutError) as e:
            metrics.EMBEDDER_ERRORS.inc()
            self.healthy = False
            reason = str(e) or f"no vector within {self.timeout:g} s"
            raise EmbedderUnavailableError(reason) from e
        self.healthy = True
        return vector

    async def aclose(self) -> None:
        streams = [*self._finishing, *([self._stream] if self._stream else [])]
        await asyncio.gather(*(s.aclose() for s in streams))
        await self._channel.close()
