"""The shard's client of `semcache.v1.Embedder`."""

from __future__ import annotations

import grpc
import numpy as np

from cache_svc import metrics
from semcache.server import CHANNEL_OPTIONS
from semcache.tls import TlsFiles, open_channel
from semcache.v1 import embedder_pb2, embedder_pb2_grpc


class EmbedderUnavailableError(Exception):
    """The embedder could not embed the text (down, overloaded or too slow)."""


class EmbedderClient:
    def __init__(self, address: str, timeout: float = 2.0, tls: TlsFiles | None = None) -> None:
        self.address = address
        self.timeout = timeout
        # round_robin: every address the name resolves to (all the pods of a headless
        # Service) takes calls, not only the first.
        options = [*CHANNEL_OPTIONS, ("grpc.lb_policy_name", "round_robin")]
        self._channel = open_channel(address, tls, options)
        self._stub = embedder_pb2_grpc.EmbedderStub(self._channel)
        self.healthy = True

    async def embed(self, text: str) -> np.ndarray:
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
