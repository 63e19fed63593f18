"""The router assembled: shard pool, servicers and server, as one context."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from router_svc.http import running_http_front
from router_svc.membership import RegistryWatcher, static_members
from router_svc.pool import ShardPool
from router_svc.servicer import Router, RouterAdminServicer, RouterCacheServicer
from semcache.config import RouterConfig
from semcache.server import GrpcServer, Service
from semcache.v1 import cache_pb2, cache_pb2_grpc
from semcache.validation import RequestLimits


@contextlib.asynccontextmanager
async def running_router(config: RouterConfig) -> AsyncIterator[tuple[GrpcServer, ShardPool]]:
    pool = ShardPool(
        vnodes=config.vnodes, load_factor=config.load_factor,
        health_interval=config.health_interval_seconds,
        health_timeout=config.health_timeout_seconds, unhealthy_after=config.unhealthy_after,
        drain_seconds=config.default_timeout_seconds, tls=config.load_tls(),
    )  # fmt: skip
    router = Router(pool, config.default_timeout_seconds, config.load_tokens())
    services = [
        Service(cache_pb2.DESCRIPTOR.services_by_name["SemanticCache"],
                cache_pb2_grpc.add_SemanticCacheServicer_to_server,
                RouterCacheServicer(router, RequestLimits())),
        Service(cache_pb2.DESCRIPTOR.services_by_name["Admin"],
                cache_pb2_grpc.add_AdminServicer_to_server, RouterAdminServicer(router)),
    ]  # fmt: skip
    try:
        async with contextlib.AsyncExitStack() as stack:
            if config.registry is not None:
                await stack.enter_async_context(
                    RegistryWatcher(config.registry, pool, config.registry_interval_seconds)
                )
            else:
                await pool.update(static_members(config.shard_addresses))
            await pool.start()
            server = await stack.enter_async_context(GrpcServer(config, services))
            if config.http_port >= 0:
                tls = config.load_tls()
                # Its own gRPC port, by a name a TLS certificate can carry.
                own = f"{'localhost' if tls else '127.0.0.1'}:{server.port}"
                models = [m.strip() for m in config.http_models.split(",") if m.strip()]
                await stack.enter_async_context(running_http_front(
                    own, host=config.host, port=config.http_port,
                    auth=config.tokens_file is not None, models=models, tls=tls))  # fmt: skip
            yield server, pool
    finally:
        await pool.aclose()
