"""The embedding service assembled: models, batchers, servicer and server, as one context."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from embed_svc.batcher import BatchLimits, MicroBatcher
from embed_svc.model import EmbeddingModel
from embed_svc.models import ModelSet, ModelWatcher, load_model
from embed_svc.servicer import EmbedderServicer, RequestLimits
from semcache.runtime.config import EmbedderConfig
from semcache.runtime.server import GrpcServer, Service
from semcache.v1 import embedder_pb2, embedder_pb2_grpc

log = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def running_embedder(
    config: EmbedderConfig, model: EmbeddingModel | None = None
) -> AsyncIterator[GrpcServer]:
    """Serves `semcache.v1.Embedder` until the context exits.

    The model is loaded from `config.model_dir` unless one is given (tests wrap the real
    model to control timing). Without either, the service serves the default model and
    switches to a better one when it gets built (`ModelWatcher`).
    """
    watch = model is None and config.model_dir is None
    if model is None:
        model = await load_model(config.model_dir)
    log.info("model ready", extra={"model": model.model_id})

    def batcher(m: EmbeddingModel) -> MicroBatcher:
        return MicroBatcher(
            m,
            limits=BatchLimits(config.max_batch_texts, config.max_batch_tokens),
            workers=config.workers,
            max_queue=config.max_queue,
            max_wait=config.max_wait_ms / 1000,
        )

    models = ModelSet(batcher)
    await models.add(model)
    watcher = ModelWatcher(models, config.model_watch_seconds)
    servicer = EmbedderServicer(
        models, limits=RequestLimits(config.max_texts_per_call, config.max_text_bytes)
    )
    service = Service(
        embedder_pb2.DESCRIPTOR.services_by_name["Embedder"],
        embedder_pb2_grpc.add_EmbedderServicer_to_server,
        servicer,
    )
    server = GrpcServer(config, [service])
    servicer.stopping = server.stopping
    try:
        async with server:
            if watch and config.model_watch_seconds > 0:
                watcher.periodic.start()
            yield server
    finally:
        await watcher.periodic.stop()
        await models.aclose()
