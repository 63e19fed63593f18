"""Membership through the Redis registry: shards heartbeat, the router follows."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator

import grpc
import pytest
from prometheus_client import REGISTRY

from cache_svc.llm import EchoBackend
from cache_svc.service import running_shard
from router_svc.membership import RegistryWatcher
from router_svc.pool import ShardPool
from router_svc.service import running_router
from semcache import keys
from semcache.dev.localredis import LocalRedis
from semcache.dev.probe import free_port
from semcache.runtime import registry
from semcache.runtime.config import ConfigError, RouterConfig, ShardConfig
from semcache.runtime.ring import HashRing
from semcache.v1 import cache_pb2, cache_pb2_grpc
from tests.conftest import eventually, shard_config

_databases = itertools.count(1)


@pytest.fixture
def registry_url(redis_server: LocalRedis) -> str:
    """A Redis database of this test's own (entries stay in db 0 of the shared server)."""
    return redis_server.url.rsplit("/", 1)[0] + f"/{next(_databases) % 16 or 1}"


def router_config(url: str) -> RouterConfig:
    return RouterConfig(
        port=0,
        metrics_port=-1,
        grace_seconds=0,
        registry=url,
        registry_interval_seconds=0.05,
        health_interval_seconds=0.1,
        unhealthy_after=2,
    )


@contextlib.asynccontextmanager
async def registered_shard(
    embedder: str, redis_url: str, url: str, shard_id: str, ttl: float = 10.0
) -> AsyncIterator[str]:
    config = shard_config(
        embedder=embedder,
        redis=redis_url,
        registry=url,
        shard_id=shard_id,
        registry_ttl_seconds=ttl,
    )
    async with running_shard(config, llm=EchoBackend()) as (server, _shard):
        yield server.address


async def test_router_follows_shards_joining_and_leaving(
    embedder_address, redis_server, registry_url, tenant
) -> None:
    client = registry.connect(registry_url)
    await client.flushdb()
    async with contextlib.AsyncExitStack() as stack:
        first = await stack.enter_async_context(
            registered_shard(embedder_address, redis_server.url, registry_url, "shard-0")
        )
        assert await registry.read_members(client) == {"shard-0": first}
        _router, pool = await stack.enter_async_context(running_router(router_config(registry_url)))
        assert pool.ring.members == ["shard-0"]
        async with registered_shard(
            embedder_address, redis_server.url, registry_url, "shard-1"
        ) as second:
            await eventually(lambda: pool.ring.members == ["shard-0", "shard-1"])
            assert pool.members["shard-1"].address == second
        # Leaving cleanly deregisters: the router drops it without waiting for health checks.
        assert await registry.read_members(client) == {"shard-0": first}
        await eventually(lambda: list(pool.members) == ["shard-0"], within=2)
        assert pool.ring.members == ["shard-0"]
    assert await registry.read_members(client) == {}
    await client.aclose()


async def test_a_dead_shards_registration_expires(redis_server, registry_url) -> None:
    client = registry.connect(registry_url)
    await client.flushdb()
    await client.set(registry.member_key("gone"), "127.0.0.1:1", px=100)
    await client.sadd(registry.INDEX_KEY, "gone")
    assert await registry.read_members(client) == {"gone": "127.0.0.1:1"}
    async with asyncio.timeout(5):
        while await registry.read_members(client):  # noqa: ASYNC110 - Redis expiry has no event
            await asyncio.sleep(0.02)
    assert await client.smembers(registry.INDEX_KEY) == set()  # pruned by the reader
    await client.aclose()


async def test_router_keeps_its_shards_while_the_registry_is_down(
    embedder_address, redis_server, tenant
) -> None:
    own = LocalRedis(free_port())
    own.start()
    try:
        async with (
            registered_shard(embedder_address, redis_server.url, own.url, "shard-0"),
            running_router(router_config(own.url)) as (router, pool),
            grpc.aio.insecure_channel(router.address) as channel,
        ):
            assert pool.ring.members == ["shard-0"]
            own.stop()
            await eventually(lambda: REGISTRY.get_sample_value("semcache_registry_readable") == 0)
            assert pool.ring.members == ["shard-0"]
            reply = await cache_pb2_grpc.SemanticCacheStub(channel).Complete(
                cache_pb2.CompleteRequest(scope=cache_pb2.Scope(tenant=tenant), prompt="hello")
            )
            assert reply.cache.shard == "shard-0"
    finally:
        own.stop()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (lambda: RouterConfig(), "either shards"),
        (lambda: RouterConfig(shards="127.0.0.1:1", registry="redis://x"), "either shards"),
        (lambda: RouterConfig(registry="http://x"), "registry: must be a redis:// URL"),
        (lambda: ShardConfig(host="0.0.0.0", registry="redis://x"), "advertise: required"),
        (lambda: ShardConfig(registry="redis://x", advertise="nope"), "advertise: 'nope'"),
    ],
)
def test_membership_settings_are_checked(config, message) -> None:
    with pytest.raises(ConfigError, match=message):
        config().validate()


async def test_an_empty_read_after_an_outage_keeps_healthy_shards(
    embedder_address, redis_server, registry_url
) -> None:
    """Redis back without the registrations (no persistence): shards re-beat within ttl/3,
    and until then the router keeps the healthy ones instead of emptying its ring."""
    client = registry.connect(registry_url)
    await client.flushdb()
    pool = ShardPool(
        vnodes=150, load_factor=0, health_interval=60, health_timeout=1, unhealthy_after=1
    )
    async with registered_shard(embedder_address, redis_server.url, registry_url, "shard-0"):
        watcher = RegistryWatcher(registry_url, pool, interval=60, grace=30)
        async with watcher:
            assert pool.ring.members == ["shard-0"]
            await client.flushdb()  # what a restarted Redis without persistence holds
            await watcher.sync()
            assert pool.ring.members == ["shard-0"]
            watcher.grace = 0  # past the grace: an absent member goes
            await watcher.sync()
            assert pool.ring.members == []
    await pool.aclose()
    await client.aclose()


async def test_deregistering_leaves_another_shards_registration_alone(registry_url) -> None:
    client = registry.connect(registry_url)
    await client.flushdb()
    async with registry.Heartbeat(registry_url, "shard-x", "127.0.0.1:1", ttl=10):
        # Another process took the id (a replacement pod) and wrote its own address.
        await client.set(registry.member_key("shard-x"), "127.0.0.1:2", px=10_000)
    assert await registry.read_members(client) == {"shard-x": "127.0.0.1:2"}
    await client.aclose()


async def test_a_shard_lets_go_of_what_a_returning_owner_owns(
    embedder_address, redis_server, registry_url, tenant
) -> None:
    """The stale-copy case: a namespace fails over to shard-a while its owner shard-b is
    away; when shard-b returns, shard-a releases its copy, so an entry invalidated through
    shard-b is not served by shard-a on the next failover."""
    await registry.connect(registry_url).flushdb()
    ring = HashRing(["shard-a", "shard-b"])
    scopes = (cache_pb2.Scope(tenant=tenant, system_prompt=f"prompt {i}") for i in range(1000))
    scope = next(s for s in scopes if ring.owner(keys.namespace_key(s)) == "shard-b")
    prompt = "How do I renew my passport?"

    def shard(shard_id: str):  # a running_shard context
        return running_shard(
            shard_config(
                embedder=embedder_address,
                redis=redis_server.url,
                registry=registry_url,
                shard_id=shard_id,
            ),
            llm=EchoBackend(),
        )

    def healthy(pool: ShardPool) -> list[str]:
        return sorted(m.id for m in pool.members.values() if m.healthy)

    async with contextlib.AsyncExitStack() as stack:
        _server, shard_a = await stack.enter_async_context(shard("shard-a"))
        router, pool = await stack.enter_async_context(running_router(router_config(registry_url)))
        channel = await stack.enter_async_context(grpc.aio.insecure_channel(router.address))
        cache = cache_pb2_grpc.SemanticCacheStub(channel)
        async with shard("shard-b"):
            await eventually(lambda: healthy(pool) == ["shard-a", "shard-b"])
            first = await cache.Complete(cache_pb2.CompleteRequest(scope=scope, prompt=prompt))
            assert first.cache.shard == "shard-b"
        await eventually(lambda: healthy(pool) == ["shard-a"])
        failover = await cache.Lookup(cache_pb2.LookupRequest(scope=scope, prompt=prompt))
        assert failover.cache.status == cache_pb2.CACHE_STATUS_HIT
        assert failover.cache.shard == "shard-a"  # hydrated from Redis
        assert shard_a.stats()["namespaces"] == 1
        async with shard("shard-b"):
            await eventually(lambda: healthy(pool) == ["shard-a", "shard-b"])
            await eventually(lambda: shard_a.stats()["namespaces"] == 0)  # released
            await cache.Invalidate(
                cache_pb2.InvalidateRequest(
                    scope=cache_pb2.Scope(tenant=tenant), entry_id=first.cache.entry_id
                )
            )
        await eventually(lambda: healthy(pool) == ["shard-a"])
        again = await cache.Lookup(cache_pb2.LookupRequest(scope=scope, prompt=prompt))
        assert again.cache.shard == "shard-a"
        assert again.cache.status == cache_pb2.CACHE_STATUS_MISS  # not a stale copy
