"""The embedding service assembled: model, batcher, servicer and server, as one context."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from embed_svc.batcher import BatchLimits, MicroBatcher
from embed_svc.model import EmbeddingModel, OnnxEmbedder
from embed_svc.servicer import EmbedderServicer, RequestLimits
from semcache.config import EmbedderConfig
from semcache.server import GrpcServer, Service
from semcache.v1 import embedder_pb2, embedder_pb2_grpc

log = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def running_embedder(
    config: EmbedderConfig, model: EmbeddingModel | None = None
) -> AsyncIterator[GrpcServer]:
    """Serves `semcache.v1.Embedder` until the context exits.

    The model is loaded from `config.model_dir` unless one is given (tests wrap the real
    model to control timing).
    """
    if model is None:
        model = await asyncio.to_thread(OnnxEmbedder, config.model_dir)
        # The first inference pays onnxruntime's lazy set-up (~10 ms): not a caller's problem.
        await asyncio.to_thread(model.embed, ["warm-up"])
    log.info("model ready", extra={"model": model.model_id})
    batcher = MicroBatcher(
        model,
        limits=BatchLimits(config.max_batch_texts, config.max_batch_tokens),
        workers=config.workers,
        max_queue=config.max_queue,
        max_wait=config.max_wait_ms / 1000,
    )
    servicer = EmbedderServicer(
        batcher,
        model_id=model.model_id,
        dimension=model.dimension,
        limits=RequestLimits(config.max_texts_per_call, config.max_text_bytes),
    )
    service = Service(
        embedder_pb2.DESCRIPTOR.services_by_name["Embedder"],
        embedder_pb2_grpc.add_EmbedderServicer_to_server,
        servicer,
    )
    server = GrpcServer(config, [service])
    servicer.stopping = server.stopping
    async with batcher, server:
        yield server
