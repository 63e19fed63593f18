"""A cache shard assembled from its config: Shard, servicers and server, as one context."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from grpc_health.v1.health_pb2 import HealthCheckResponse

from cache_svc.embedder import EmbedderClient
from cache_svc.eviction import Capacity, make_eviction
from cache_svc.handlers import ShardHandlers
from cache_svc.index import IndexParams
from cache_svc.link import ShardLinkServicer
from cache_svc.llm import EchoBackend, LLMBackend, OpenAIBackend
from cache_svc.ownership import OwnershipWatcher
from cache_svc.servicer import AdminServicer, CacheServicer
from cache_svc.shard import Shard, ShardSettings
from cache_svc.stall import StallWatch
from cache_svc.store import WriteThroughStore
from semcache.runtime.breaker import CircuitBreaker
from semcache.runtime.config import ShardConfig
from semcache.runtime.registry import Heartbeat
from semcache.runtime.server import GrpcServer, Service
from semcache.v1 import cache_pb2, cache_pb2_grpc, link_pb2, link_pb2_grpc

log = logging.getLogger(__name__)


def make_llm(config: ShardConfig) -> LLMBackend:
    if config.llm == "openai":
        return OpenAIBackend(
            config.openai_base_url,
            api_key_env=config.openai_api_key_env,
            timeout=config.llm_timeout,
        )
    return EchoBackend(delay=config.echo_delay_ms / 1000)


def make_shard(config: ShardConfig, llm: LLMBackend | None = None) -> Shard:
    settings = ShardSettings(
        shard_id=config.shard_id,
        default_ttl=config.default_ttl_seconds,
        index=IndexParams(
            m=config.hnsw_m,
            ef_construction=config.hnsw_ef_construction,
            ef=config.hnsw_ef,
            build_threads=config.index_build_threads,
        ),
        sweep_interval=config.sweep_interval_seconds,
        reembed_rate=config.reembed_rate,
        snapshot_min_entries=config.graph_snapshot_min_entries,
    )
    return Shard(
        settings,
        embedder=EmbedderClient(
            config.embedder,
            timeout=config.embedder_timeout,
            tls=config.tls,
            cache_entries=config.vector_cache_entries,
            breaker=CircuitBreaker(
                failures_to_open=config.embedder_breaker_failures,
                open_seconds=config.embedder_breaker_seconds,
                max_open_seconds=16 * config.embedder_breaker_seconds,
            ),
        ),
        store=WriteThroughStore(
            config.redis,
            cluster=config.redis_cluster,
            max_backlog=config.redis_backlog,
            write_timeout=config.redis_timeout,
        ),
        llm=llm or make_llm(config),
        policies=config.policies,
        eviction=make_eviction(config.eviction, Capacity(config.max_entries, config.max_bytes)),
    )


@contextlib.asynccontextmanager
async def running_shard(
    config: ShardConfig, llm: LLMBackend | None = None
) -> AsyncIterator[tuple[GrpcServer, Shard]]:
    """Serves `semcache.v1.SemanticCache` and `Admin` for one shard until the context exits.

    `llm` replaces the configured backend (tests pass an EchoBackend to count its calls).
    """
    shard = make_shard(config, llm)
    await shard.start()
    limits = config.request_limits
    handlers = ShardHandlers(shard, limits)
    cache = CacheServicer(handlers)
    link = ShardLinkServicer(handlers)
    services = [
        Service(
            cache_pb2.DESCRIPTOR.services_by_name["SemanticCache"],
            cache_pb2_grpc.add_SemanticCacheServicer_to_server,
            cache,
        ),
        Service(
            link_pb2.DESCRIPTOR.services_by_name["ShardLink"],
            link_pb2_grpc.add_ShardLinkServicer_to_server,
            link,
        ),
        Service(
            cache_pb2.DESCRIPTOR.services_by_name["Admin"],
            cache_pb2_grpc.add_AdminServicer_to_server,
            AdminServicer(shard, f"{config.host}:{config.port}"),
        ),
    ]
    try:
        if config.redis is None:
            log.warning("memory-only: no --redis given; entries are lost when the shard stops")
        server = GrpcServer(config, services)
        link.admission, link.stopping = server.admission, server.stopping
        async with server, contextlib.AsyncExitStack() as stack:
            if config.registry is not None:
                # Registered only once serving, and deregistered before the server stops,
                # so routers neither dial it early nor keep sending calls while it drains.
                await stack.enter_async_context(
                    Heartbeat(
                        config.registry,
                        config.shard_id,
                        config.advertise or server.address,
                        config.registry_ttl_seconds,
                        cluster=config.redis_cluster,
                    )
                )
                await stack.enter_async_context(
                    OwnershipWatcher(
                        config.registry,
                        config.shard_id,
                        shard,
                        config.ring_vnodes,
                        cluster=config.redis_cluster,
                    )
                )
            if config.stall_seconds > 0 and config.redis is not None:  # memory-only: no copies

                async def serving(ok: bool) -> None:
                    status = HealthCheckResponse.SERVING if ok else HealthCheckResponse.NOT_SERVING
                    await server.health.set("", status)

                stalls = StallWatch(shard, config.stall_seconds, serving)
                stalls.start()
                stack.push_async_callback(stalls.stop)
            yield server, shard
    finally:
        await shard.aclose()
