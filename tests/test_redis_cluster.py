"""Redis Cluster (3 masters, 3 replicas, started here on free loopback ports) under the
write-through store, the registry and the mesh: what works on one Redis works on a cluster,
a master SIGKILLed under load fails no call and loses no acknowledged entry. The store's
own guarantees (namespace drop against concurrent puts, tenant sets pruned) are checked on
both kinds of Redis."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import grpc
import numpy as np
import pytest
import pytest_asyncio
from redis.asyncio.connection import AbstractConnection

from cache_svc.entry import Answer, Entry
from cache_svc.service import running_shard
from cache_svc.snapshot import Membership
from cache_svc.store import (
    StoreUnavailableError,
    WriteThroughStore,
    entry_key,
    ids_key,
    tenant_key,
)
from router_svc.service import running_router
from semcache import keys
from semcache.dev.localredis import LocalRedis, LocalRedisCluster
from semcache.dev.probe import free_cluster_ports
from semcache.runtime import redisclient
from semcache.runtime.config import RouterConfig
from semcache.v1 import cache_pb2, cache_pb2_grpc
from tests.conftest import eventually, shard_config, whole_ring
from tests.test_faults import Load
from tests.test_router import complete

HIT = cache_pb2.CACHE_STATUS_HIT


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedisCluster]:
    cluster = LocalRedisCluster(free_cluster_ports(6), tmp_path_factory.mktemp("cluster"))
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture(params=["standalone", "cluster"])
def redis_kind(request: pytest.FixtureRequest, redis_server: LocalRedis) -> tuple[str, bool]:
    """(url, cluster) of each kind of Redis the store runs on."""
    if request.param == "standalone":
        return redis_server.url, False
    cluster = request.getfixturevalue("redis_cluster")
    return cluster.url, True


@pytest_asyncio.fixture
async def store(redis_kind: tuple[str, bool]) -> AsyncIterator[WriteThroughStore]:
    url, cluster = redis_kind
    store = WriteThroughStore(url, cluster=cluster, write_timeout=2.0)
    await store.start()
    assert store.state == "up"
    yield store
    await store.aclose()


def entry(namespace: str, tenant: str, prompt: str) -> Entry:
    now = time.time()
    vector = np.random.default_rng(len(prompt)).standard_normal(384).astype(np.float32)
    return Entry(
        id=keys.new_entry_id(namespace),
        namespace=namespace,
        tenant=tenant,
        prompt=prompt,
        prompt_key=keys.prompt_key(prompt),
        answer=Answer(text=f"answer to {prompt}"),
        category="default",
        created=now,
        expires=now + 600,
        vector=vector / np.linalg.norm(vector),
        model="m",
    )


async def orphans(url: str, cluster: bool, namespace: str) -> tuple[set[str], set[str]]:
    """(entries stored but not listed in the ids set, ids listed without an entry)."""
    client = redisclient.connect(url, cluster=cluster)
    try:
        listed = {i.decode() for i in await client.smembers(ids_key(namespace))}  # type: ignore[misc]
        stored = set()
        async for key in client.scan_iter(match=entry_key(namespace, "*").replace("{", "\\{")):
            if await client.hexists(key, "id"):
                stored.add(key.decode().rsplit(":", 1)[1])
        return stored - listed, listed - stored
    finally:
        await client.aclose()


def close_under_next_write(monkeypatch) -> list[int]:
    """The next command a connection sends meets it closed (another task disconnected it
    just as the command goes out); the list empties when that happened."""
    real = AbstractConnection._send_packed_command
    closings = [1]

    async def closed_under_the_write(self: AbstractConnection, command) -> None:
        if closings:
            closings.pop()
            self._writer = None
        await real(self, command)

    monkeypatch.setattr(AbstractConnection, "_send_packed_command", closed_under_the_write)
    return closings


async def test_a_connection_closed_under_a_write_fails_it_like_an_outage(
    redis_server, tenant, monkeypatch
) -> None:
    """redis-py's asyncio connection lets an AttributeError escape from its own I/O code
    when it is closed under a write (its writer gone: redis-py #3546, seen when a cluster
    master was killed under load). The store takes it for a failed write like any other:
    queued, written when Redis answers again, never an error to the caller."""
    store = WriteThroughStore(redis_server.url, write_timeout=2.0, retry_interval=0.05)
    await store.start()
    try:
        closings = close_under_next_write(monkeypatch)
        written = entry(f"{tenant}-closed", tenant, "written while the connection closed")
        await store.put(written)  # raised AttributeError before
        assert not closings  # the write did meet the closed connection
        await eventually(lambda: store.state == "up" and store.backlog == 0)
        loaded = await store.load_namespace(written.namespace, time.time())
        assert [e.id for e in loaded] == [written.id]
    finally:
        await store.aclose()


async def exported(store: WriteThroughStore, namespace: str) -> list[list[Entry]]:
    return [batch async for batch in store.entries_of(namespace, time.time())]


READS = {
    "entries_of": lambda store, ns, tenant: exported(store, ns),
    "load_namespace": lambda store, ns, tenant: store.load_namespace(ns, time.time()),
    "scope_of": lambda store, ns, tenant: store.scope_of(ns),
    "snapshot_manifest": lambda store, ns, tenant: store.snapshot_manifest(ns),
    "namespaces_of_tenant": lambda store, ns, tenant: store.namespaces_of_tenant(tenant),
    "tenants": lambda store, ns, tenant: store.tenants(),
}


@pytest.mark.parametrize("read", sorted(READS))
async def test_a_connection_closed_under_a_read_is_an_outage(
    redis_server, tenant, monkeypatch, read
) -> None:
    """The same closed connection under a read: the caller gets StoreUnavailableError (what
    it handles: hydrate later, UNAVAILABLE to an export), not the AttributeError (an
    INTERNAL)."""
    store = WriteThroughStore(redis_server.url, write_timeout=2.0, retry_interval=0.05)
    await store.start()
    try:
        stored = entry(f"{tenant}-read", tenant, "stored before the connection closed")
        await store.put(stored)
        closings = close_under_next_write(monkeypatch)
        with pytest.raises(StoreUnavailableError):
            await READS[read](store, stored.namespace, tenant)
        assert not closings
    finally:
        await store.aclose()


async def test_a_type_error_of_asyncio_without_redis_on_the_stack_stays_a_bug() -> None:
    """asyncio raising for our own misuse (no redis-py call under way) is not an outage."""
    with pytest.raises(TypeError), redisclient.closed_connections():
        await asyncio.wait_for(None, 1)  # type: ignore[arg-type]


async def test_a_bug_in_a_write_is_not_taken_for_an_outage(redis_server, tenant) -> None:
    """An entry the store cannot serialise is its caller's bug: raised at once, Redis still
    up, nothing queued to fail again and again."""
    store = WriteThroughStore(redis_server.url, write_timeout=2.0)
    await store.start()
    try:
        broken = entry(f"{tenant}-broken", tenant, "an entry with bytes in its metadata")
        broken.answer = Answer(text="a", metadata={"source": b"not text"})  # type: ignore[dict-item]
        with pytest.raises(TypeError):
            await store.put(broken)
        assert store.state == "up" and store.backlog == 0
    finally:
        await store.aclose()


async def test_entries_round_trip_in_many_namespaces(store: WriteThroughStore, tenant) -> None:
    namespaces = [f"{tenant}-ns{i}" for i in range(12)]  # spread over the masters' slots
    written = {
        ns: [entry(ns, tenant, f"prompt {i} of {ns}") for i in range(5)] for ns in namespaces
    }
    for entries in written.values():
        for e in entries:
            await store.put(e)
    for ns, entries in written.items():
        loaded = await store.load_namespace(ns, time.time())
        assert sorted(e.id for e in loaded) == sorted(e.id for e in entries)
        assert all(
            np.allclose(a.vector, b.vector)
            for a, b in zip(
                sorted(loaded, key=lambda e: e.id), sorted(entries, key=lambda e: e.id), strict=True
            )
        )
    assert await store.namespaces_of_tenant(tenant) == sorted(namespaces)


async def test_a_dropped_namespace_leaves_no_entry_behind_and_loses_no_later_put(
    store: WriteThroughStore, redis_kind: tuple[str, bool], tenant
) -> None:
    """Puts racing a drop: each lands wholly before it (deleted) or wholly after it (kept,
    and listed): Redis never holds an entry its namespace's ids set does not list."""
    namespace = f"{tenant}-dropped"
    for round_ in range(5):
        before = [entry(namespace, tenant, f"before {round_} {i}") for i in range(300)]
        await asyncio.gather(*(store.put(e) for e in before))
        racing = [entry(namespace, tenant, f"racing {round_} {i}") for i in range(300)]
        await asyncio.gather(store.drop_namespace(namespace), *(store.put(e) for e in racing))
        unlisted, _ = await orphans(*redis_kind, namespace)
        assert unlisted == set(), f"round {round_}: {len(unlisted)} entries no drop can find"
        loaded = {e.id for e in await store.load_namespace(namespace, time.time())}
        assert not loaded & {e.id for e in before}
    await store.drop_namespace(namespace)
    assert await store.load_namespace(namespace, time.time()) == []


async def test_the_tenant_set_keeps_only_namespaces_that_hold_entries(
    store: WriteThroughStore, redis_kind: tuple[str, bool], tenant
) -> None:
    kept, dropped = f"{tenant}-kept", f"{tenant}-gone"
    await store.put(entry(kept, tenant, "what is kept"))
    await store.put(entry(dropped, tenant, "what goes"))
    await store.drop_namespace(dropped)
    assert await store.namespaces_of_tenant(tenant) == [kept]
    client = redisclient.connect(redis_kind[0], cluster=redis_kind[1])
    try:
        assert await client.smembers(tenant_key(tenant)) == {kept.encode()}  # type: ignore[misc]
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def cluster_mesh(embedder_address: str, url: str, shards: int = 2) -> AsyncIterator[dict]:
    """Shards and a router that find each other through a registry on the cluster."""
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(shards):
            await stack.enter_async_context(
                running_shard(
                    shard_config(
                        embedder=embedder_address,
                        redis=url,
                        registry=url,
                        redis_cluster=True,
                        redis_timeout=2.0,
                        shard_id=f"shard-{uuid.uuid4().hex[:6]}",
                    )
                )
            )
        config = RouterConfig(
            port=0,
            metrics_port=-1,
            grace_seconds=0,
            registry=url,
            redis_cluster=True,
            registry_interval_seconds=0.2,
            health_interval_seconds=0.1,
        )
        router, pool = await stack.enter_async_context(running_router(config))
        await whole_ring(pool, shards)
        channel = await stack.enter_async_context(grpc.aio.insecure_channel(router.address))
        yield {
            "cache": cache_pb2_grpc.SemanticCacheStub(channel),
            "admin": cache_pb2_grpc.AdminStub(channel),
        }


async def test_paraphrase_hit_through_the_router_and_restarted_shards_hydrate_every_entry(
    embedder_address, redis_cluster: LocalRedisCluster, tenant
) -> None:
    prompts = [f"How do I renew a passport issued in country number {i}?" for i in range(20)]
    async with cluster_mesh(embedder_address, redis_cluster.url) as m:
        first = await m["cache"].Complete(complete(tenant, "How do I renew my passport?"))
        hit = await m["cache"].Complete(complete(tenant, "How can I renew my passport?"))
        assert hit.cache.status == HIT and hit.cache.kind == cache_pb2.MATCH_KIND_SEMANTIC
        assert hit.cache.entry_id == first.cache.entry_id
        for i, prompt in enumerate(prompts):
            await m["cache"].Complete(complete(f"{tenant}-{i % 7}", prompt))
    async with cluster_mesh(embedder_address, redis_cluster.url, shards=3) as m:  # new shards
        for i, prompt in enumerate(prompts):
            again = await m["cache"].Lookup(
                cache_pb2.LookupRequest(
                    scope=complete(f"{tenant}-{i % 7}", "").scope, prompt=prompt
                )
            )
            assert again.cache.status == HIT and again.cache.kind == cache_pb2.MATCH_KIND_EXACT


async def test_a_master_killed_under_load_fails_no_call_and_loses_no_entry(
    embedder_address, tmp_path, tenant
) -> None:
    """SIGKILL of a master while 4 callers store through the router: its replica is promoted
    (node timeout 1 s), writes meanwhile are queued and retried, and what the dead master
    acknowledged without passing on is written back by the shards, which see the failover."""
    cluster = LocalRedisCluster(free_cluster_ports(6), tmp_path / "cluster")
    cluster.start()
    seed = cluster.url
    try:
        async with cluster_mesh(embedder_address, seed) as m:
            load = Load(m["cache"], tenant)
            load.start()
            await asyncio.sleep(1.0)
            # The node the shards and the router were given: they must find the others.
            victim = next(node for node in cluster.masters() if node.url == seed)
            assert victim.process is not None
            victim.process.send_signal(signal.SIGKILL)
            await asyncio.to_thread(victim.process.wait, 10)
            await asyncio.to_thread(cluster.wait_ok, 30)  # a replica took over
            await asyncio.sleep(1.0)  # and calls went on against the new master
            await load.stop()
            assert load.failures == []

            async def settled() -> bool:
                stats = await m["admin"].Stats(cache_pb2.StatsRequest())
                return stats.total.redis_backlog == 0 and all(
                    s.redis_state == "up" for s in stats.shards
                )

            await eventually(settled, within=30)
            stats = await m["admin"].Stats(cache_pb2.StatsRequest())
        stored = [r.cache for r in load.responses if r.cache.stored]
        assert len(stored) > 50
        client = redisclient.connect(cluster.url, cluster=True)
        try:
            present = [
                await client.hexists(entry_key(c.namespace, c.entry_id), "id") for c in stored
            ]
        finally:
            await client.aclose()
        lost = len(stored) - sum(present)
        print(
            f"\nmaster killed: {load.calls} calls, {len(load.failures)} failed, "
            f"{len(stored)} entries stored, {lost} lost, "
            f"{stats.total.redis_written_back} written back after the failover"
        )
        assert lost == 0, f"{lost} acknowledged entries lost"
    finally:
        cluster.stop()


async def test_writes_a_promoted_replica_never_received_are_written_back(
    embedder_address, tmp_path, tenant
) -> None:
    """The loss a failover can cause, made certain: the replica is paused while its master
    acknowledges writes, the master dies, the replica is promoted without them. The shard
    sees the masters change and writes back what it holds."""
    cluster = LocalRedisCluster(free_cluster_ports(6), tmp_path / "cluster")
    cluster.start()
    try:
        async with cluster_mesh(embedder_address, cluster.url, shards=1) as m:
            first = await m["cache"].Complete(complete(tenant, "What is the tallest mountain?"))
            master = cluster.master_of(ids_key(first.cache.namespace))
            replica = cluster.replica_of(master)
            assert master.process is not None and replica.process is not None
            replica.process.send_signal(signal.SIGSTOP)
            try:
                # Cut the link too: a paused replica's socket would still take in the
                # stream (the kernel buffers it) and it would catch up once resumed.
                await asyncio.to_thread(
                    cluster.command, master, "CLIENT", "KILL", "TYPE", "replica"
                )
                later = [
                    await m["cache"].Complete(complete(tenant, f"How tall is mountain {i}?"))
                    for i in range(20)
                ]
                master.process.send_signal(signal.SIGKILL)
                await asyncio.to_thread(master.process.wait, 10)
            finally:
                replica.process.send_signal(signal.SIGCONT)
            await asyncio.to_thread(cluster.take_over, replica)
            await asyncio.to_thread(cluster.wait_ok, 30)
            stored = [r.cache for r in [first, *later]]
            assert all(c.stored for c in stored)
            client = redisclient.connect(cluster.url, cluster=True)
            try:

                async def all_present() -> bool:
                    found = [
                        await client.hexists(entry_key(c.namespace, c.entry_id), "id")
                        for c in stored
                    ]
                    return all(found)

                await eventually(all_present, within=20)
            finally:
                await client.aclose()
            stats = await m["admin"].Stats(cache_pb2.StatsRequest())
            assert stats.total.redis_written_back >= len(stored)
    finally:
        cluster.stop()


async def test_a_graph_snapshot_round_trips_in_chunks(
    store: WriteThroughStore, tenant, tmp_path, monkeypatch
) -> None:
    monkeypatch.setattr("cache_svc.store.SNAPSHOT_CHUNK_BYTES", 1000)  # many chunks
    namespace = f"{tenant}-graph"
    graph = tmp_path / "graph"
    graph.write_bytes(bytes(range(256)) * 20)
    membership = Membership(np.arange(3, dtype=np.int64), ["a", "b", "c"])
    assert await store.save_snapshot(namespace, "m", graph, membership)
    first = await store.snapshot_manifest(namespace)
    assert first is not None and first.chunks == 7  # 6 of the graph, 1 of the membership
    assert await store.save_snapshot(namespace, "m", graph, membership)  # replaces it
    manifest = await store.snapshot_manifest(namespace)
    assert manifest is not None and manifest.version != first.version
    assert await store.load_snapshot(namespace, first, tmp_path / "old") is None  # deleted
    loaded = await store.load_snapshot(namespace, manifest, tmp_path / "copy")
    assert loaded is not None and loaded.ids == ["a", "b", "c"]
    assert (tmp_path / "copy").read_bytes() == graph.read_bytes()
