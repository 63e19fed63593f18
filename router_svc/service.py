"""The router assembled: shard pool, servicers and server, as one context."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from router_svc.pool import ShardPool
from router_svc.servicer import Router, RouterAdminServicer, RouterCacheServicer
from semcache.config import RouterConfig
from semcache.server import GrpcServer, Service
from semcache.v1 import cache_pb2, cache_pb2_grpc
from semcache.validation import RequestLimits


@contextlib.asynccontextmanager
async def running_router(config: RouterConfig) -> AsyncIterator[tuple[GrpcServer, ShardPool]]:
    pool = ShardPool(
        config.shard_addresses, vnodes=config.vnodes, load_factor=config.load_factor,
        health_interval=config.health_interval_seconds,
        health_timeout=config.health_timeout_seconds, unhealthy_after=config.unhealthy_after,
    )  # fmt: skip
    await pool.start()
    router = Router(pool, config.default_timeout_seconds)
    services = [
        Service(cache_pb2.DESCRIPTOR.services_by_name["SemanticCache"],
                cache_pb2_grpc.add_SemanticCacheServicer_to_server,
                RouterCacheServicer(router, RequestLimits())),
        Service(cache_pb2.DESCRIPTOR.services_by_name["Admin"],
                cache_pb2_grpc.add_AdminServicer_to_server, RouterAdminServicer(router)),
    ]  # fmt: skip
    try:
        async with GrpcServer(config, services) as server:
            yield server, pool
    finally:
        await pool.aclose()
