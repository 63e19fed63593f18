"""`semcache.v1.Embedder`: validate the request, embed through the shared batcher, map back."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc

from embed_svc.batcher import BatcherClosedError, QueueFullError
from embed_svc.metrics import TRACER
from embed_svc.models import ModelSet
from semcache.runtime import tracing
from semcache.runtime.mux import serve_stream
from semcache.runtime.validation import EMBED_TEXT_MAX_BYTES
from semcache.v1 import embedder_pb2, embedder_pb2_grpc

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RequestLimits:
    max_texts: int = 256
    max_text_bytes: int = EMBED_TEXT_MAX_BYTES


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


class EmbedRequestError(Exception):
    """A request that cannot be embedded, with the status that says why."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class EmbedderServicer(embedder_pb2_grpc.EmbedderServicer):
    def __init__(self, models: ModelSet, *, limits: RequestLimits) -> None:
        self.models = models
        self._limits = limits
        #: The server's stopping signal (set once the server exists): streams then end.
        self.stopping: asyncio.Event | None = None

    async def _embed(self, request: embedder_pb2.EmbedRequest) -> embedder_pb2.EmbedResponse:
        texts = list(request.texts)
        if problem := validate_texts(texts, self._limits):
            raise EmbedRequestError(grpc.StatusCode.INVALID_ARGUMENT, problem)
        served, current = self.models.pick(request.model), self.models.current
        tracing.annotate(texts=len(texts), model=served.model.model_id)
        try:
            embedded = await served.batcher.embed(texts)
        except QueueFullError as e:
            raise EmbedRequestError(grpc.StatusCode.RESOURCE_EXHAUSTED, str(e)) from e
        except BatcherClosedError as e:
            raise EmbedRequestError(grpc.StatusCode.UNAVAILABLE, str(e)) from e
        return embedder_pb2.EmbedResponse(
            embeddings=[
                embedder_pb2.Embedding(
                    vector=e.vector.astype("<f4", copy=False).tobytes(),
                    token_count=e.token_count,
                    truncated=e.truncated,
                )
                for e in embedded
            ],
            model=served.model.model_id,
            dimension=served.model.dimension,
            current_model=current.model.model_id,
            current_model_built=current.model.built,
        )

    async def Embed(
        self, request: embedder_pb2.EmbedRequest, context: grpc.aio.ServicerContext
    ) -> embedder_pb2.EmbedResponse:
        with TRACER.server_span("Embedder/Embed", context.invocation_metadata()):
            try:
                return await self._embed(request)
            except EmbedRequestError as e:
                tracing.failed(e.code.value[0], e.message)
                await context.abort(e.code, e.message)
                raise AssertionError("unreachable") from e

    async def EmbedStream(
        self,
        requests: AsyncIterator[embedder_pb2.EmbedStreamRequest],
        context: grpc.aio.ServicerContext,
    ) -> None:
        """Embeds each request concurrently (so the texts of one stream batch together, and
        with everyone else's) and writes each answer back as soon as it is ready."""

        async def answer(request: embedder_pb2.EmbedStreamRequest) -> Any:
            # Traced as part of a caller's trace only: a shard's own background calls
            # (model probes, re-embedding) are no request of anyone's.
            with (
                TRACER.server_span("Embedder/EmbedStream", request.trace_context)
                if request.trace_context
                else contextlib.nullcontext()
            ):
                try:
                    response = await self._embed(request.request)
                except EmbedRequestError as e:
                    error = embedder_pb2.EmbedError(code=e.code.value[0], message=e.message)
                except Exception:  # what a unary call would end with: UNKNOWN, at once
                    log.exception("embedding failed")
                    error = embedder_pb2.EmbedError(
                        code=grpc.StatusCode.UNKNOWN.value[0], message="Unexpected error"
                    )
                else:
                    return embedder_pb2.EmbedStreamResponse(id=request.id, response=response)
                tracing.failed(error.code, error.message)
                return embedder_pb2.EmbedStreamResponse(id=request.id, error=error)

        await serve_stream(requests, context, answer, closing=self.stopping)
