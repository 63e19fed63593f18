"""`semcache.v1.Embedder`: validate the request, embed through the shared batcher, map back."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from embed_svc.batcher import BatcherClosedError, MicroBatcher, QueueFullError
from semcache.v1 import embedder_pb2, embedder_pb2_grpc


@dataclass(frozen=True, slots=True)
class RequestLimits:
    max_texts: int = 256
    max_text_bytes: int = 32 * 1024


def validate_texts(texts: list[str], limits: RequestLimits) -> str | None:
    """The reason `texts` cannot be embedded, naming the offending index, or None."""
    if not texts:
        return "texts: at least one text is required"
    if len(texts) > limits.max_texts:
        return f"texts: {len(texts)} texts in one call, limit {limits.max_texts}"
    for i, text in enumerate(texts):
        if not text.strip():
            return f"texts[{i}]: empty or whitespace-only text"
        size = len(text.encode("utf-8"))
        if size > limits.max_text_bytes:
            return f"texts[{i}]: {size} bytes, limit {limits.max_text_bytes}"
    return None


class EmbedderServicer(embedder_pb2_grpc.EmbedderServicer):
    def __init__(
        self, batcher: MicroBatcher, *, model_id: str, dimension: int, limits: RequestLimits
    ) -> None:
        self._batcher = batcher
        self._model_id = model_id
        self._dimension = dimension
        self._limits = limits

    async def Embed(
        self, request: embedder_pb2.EmbedRequest, context: grpc.aio.ServicerContext
    ) -> embedder_pb2.EmbedResponse:
        texts = list(request.texts)
        if problem := validate_texts(texts, self._limits):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        try:
            embedded = await self._batcher.embed(texts)
        except QueueFullError as e:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(e))
        except BatcherClosedError as e:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(e))
        return embedder_pb2.EmbedResponse(
            embeddings=[
                embedder_pb2.Embedding(
                    vector=e.vector.astype("<f4", copy=False).tobytes(),
                    token_count=e.token_count,
                    truncated=e.truncated,
                )
                for e in embedded
            ],
            model=self._model_id,
            dimension=self._dimension,
        )
