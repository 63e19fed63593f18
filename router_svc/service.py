"""The router assembled: shard pool, servicers and server, as one context."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from router_svc.http import running_http_front
from router_svc.membership import RegistryWatcher, static_members
from router_svc.pool import ShardPool
from router_svc.servicer import Router, RouterAdminServicer, RouterCacheServicer
from semcache.runtime.config import RouterConfig
from semcache.runtime.server import GrpcServer, Service
from semcache.v1 import cache_pb2, cache_pb2_grpc


def _http_front(config: RouterConfig, grpc_port: int) -> contextlib.AbstractAsyncContextManager:
    """The OpenAI-compatible front, dialing this router's own gRPC port."""
    tls = config.tls
    if config.host in ("0.0.0.0", "::", "[::]", ""):
        host = "localhost" if tls else "127.0.0.1"  # a name a certificate can carry
    else:
        host = config.host
    # HTTPS whenever the gRPC port is TLS, with the same identity and client
    # certificates required whenever gRPC requires them (a plaintext side door would undo
    # both).
    https = tls.https_server_context() if tls is not None else None
    models = [m.strip() for m in config.http_models.split(",") if m.strip()]
    return running_http_front(
        f"{host}:{grpc_port}",
        host=config.host,
        port=config.http_port,
        auth=config.tokens_file is not None,
        models=models,
        tls=tls,
        https=https,
        limits=config.request_limits,
    )


@contextlib.asynccontextmanager
async def running_router(config: RouterConfig) -> AsyncIterator[tuple[GrpcServer, ShardPool]]:
    pool = ShardPool(
        vnodes=config.vnodes,
        load_factor=config.load_factor,
        health_interval=config.health_interval_seconds,
        health_timeout=config.health_timeout_seconds,
        unhealthy_after=config.unhealthy_after,
        drain_seconds=config.default_timeout_seconds,
        tls=config.tls,
    )
    router = Router(pool, config.default_timeout_seconds, config.tokens)
    services = [
        Service(
            cache_pb2.DESCRIPTOR.services_by_name["SemanticCache"],
            cache_pb2_grpc.add_SemanticCacheServicer_to_server,
            RouterCacheServicer(router, config.request_limits),
        ),
        Service(
            cache_pb2.DESCRIPTOR.services_by_name["Admin"],
            cache_pb2_grpc.add_AdminServicer_to_server,
            RouterAdminServicer(router),
        ),
    ]
    try:
        async with contextlib.AsyncExitStack() as stack:
            if config.registry is not None:
                await stack.enter_async_context(
                    RegistryWatcher(
                        config.registry,
                        pool,
                        config.registry_interval_seconds,
                        cluster=config.redis_cluster,
                    )
                )
            else:
                await pool.update(static_members(config.shard_addresses))
            await pool.start()
            server = await stack.enter_async_context(GrpcServer(config, services))
            if config.http_port >= 0:
                await stack.enter_async_context(_http_front(config, server.port))
            yield server, pool
    finally:
        await pool.aclose()
