"""Graph snapshots: a big namespace's hnswlib graph saved to Redis by the shard that built
it, loaded by the next shard that hydrates it, reconciled with what changed meanwhile."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio

from cache_svc.embedder import EmbedderClient
from cache_svc.entry import Answer, Entry
from cache_svc.eviction import Capacity, make_eviction
from cache_svc.index import IndexParams, NamespaceIndex
from cache_svc.llm import EchoBackend
from cache_svc.shard import Shard, ShardSettings
from cache_svc.store import WriteThroughStore, graph_key
from semcache import keys
from semcache.quality.policy import HitPolicy, PolicySet

MODEL = "test-model"


def unit_vectors(count: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((count, 384)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def entries(namespace: str, vectors: np.ndarray, tag: str) -> list[Entry]:
    now = time.time()
    return [
        Entry(
            id=keys.new_entry_id(namespace),
            namespace=namespace,
            tenant="t",
            prompt=f"{tag} prompt {i}",
            prompt_key=keys.prompt_key(f"{tag} prompt {i}"),
            answer=Answer(text=f"answer {i}"),
            category="default",
            created=now,
            expires=now + 600,
            vector=vector,
            model=MODEL,
        )
        for i, vector in enumerate(vectors)
    ]


async def shard(url: str, min_entries: int = 100) -> Shard:
    shard = Shard(
        ShardSettings(shard_id="s", snapshot_min_entries=min_entries, reembed_rate=0),
        embedder=EmbedderClient("127.0.0.1:1"),  # never called: searches use stored vectors
        store=WriteThroughStore(url, write_timeout=5),
        llm=EchoBackend(),
        policies=PolicySet((HitPolicy.static(0.9),)),
        eviction=make_eviction("lru", Capacity(max_entries=100_000, max_bytes=10**10)),
    )
    await shard.start()
    return shard


@pytest_asyncio.fixture
async def writer(redis_server) -> AsyncIterator[WriteThroughStore]:
    store = WriteThroughStore(redis_server.url)
    await store.start()
    yield store
    await store.aclose()


async def settle(s: Shard) -> None:
    """Until the background builds and uploads are done."""
    while s._background:
        await asyncio.gather(*list(s._background))


async def saved_by_a_shard(url: str, namespace: str) -> Shard:
    """A shard that hydrated the namespace, built its graph and saved it, now closed."""
    builder = await shard(url)
    try:
        await builder.namespace(namespace)
        await settle(builder)
    finally:
        await builder.aclose()
    return builder


def test_a_saved_graph_comes_back_whole(tmp_path: Path) -> None:
    vectors = unit_vectors(500, seed=1)
    index = NamespaceIndex()
    for label, vector in enumerate(vectors):
        index.add(label, vector)
    index.remove(7)
    labels = index.save(tmp_path / "g")
    assert labels is not None and sorted(labels.tolist()) == [i for i in range(500) if i != 7]
    restored = NamespaceIndex.restore(tmp_path / "g", labels)
    assert len(restored) == 499 and 7 not in restored
    assert [restored.search(vectors[i], 1)[0][0] for i in (0, 250, 499)] == [0, 250, 499]
    assert all(label != 7 for label, _ in restored.search(vectors[7], 4))
    restored.add(500, unit_vectors(1, seed=2)[0])  # room to grow
    assert len(restored) == 500


def test_a_file_of_another_layout_is_refused(tmp_path: Path) -> None:
    (tmp_path / "g").write_bytes(b"not a graph")
    with pytest.raises(RuntimeError):
        NamespaceIndex.restore(tmp_path / "g", np.arange(3))


def test_the_query_ef_grows_with_the_graph() -> None:
    params = IndexParams(ef=64, ef_base_size=10_000)
    assert params.ef_for(5_000) == 64 and params.ef_for(10_000) == 64
    assert params.ef_for(100_000) > 64 and params.ef_for(1_000_000) > params.ef_for(100_000)


async def test_a_new_owner_loads_the_snapshot_and_replays_what_changed(
    redis_server, writer: WriteThroughStore, tenant
) -> None:
    namespace = f"{tenant}-big"
    first = entries(namespace, unit_vectors(300, seed=3), "first")
    await writer.put_many(first)
    builder = await saved_by_a_shard(redis_server.url, namespace)
    assert builder.graphs.saved == 1
    manifest = await writer.snapshot_manifest(namespace)
    assert manifest is not None and manifest.entries == 300 and manifest.model == MODEL

    # Meanwhile: 20 entries go, 30 arrive.
    gone, later = first[:20], entries(namespace, unit_vectors(30, seed=4), "later")
    await writer.delete(namespace, [e.id for e in gone])
    await writer.put_many(later)

    owner = await shard(redis_server.url)
    try:
        ns = await owner.namespace(namespace)
        assert owner.graphs.restored == 1 and not ns.index.building
        assert len(ns) == len(ns.index) == 310 and ns.changes == 50
        now = time.time()
        for e in [*first[20:], *later]:
            assert ns.nearest(e.vector, MODEL, now, k=1)[0].entry.id == e.id
            assert ns.get(e.id).vector is not None
        for e in gone:
            assert all(c.entry.id != e.id for c in ns.nearest(e.vector, MODEL, now, k=4))
        assert owner.eviction.entries == 310
    finally:
        await owner.aclose()


async def test_a_small_namespace_keeps_no_snapshot_and_a_drop_removes_one(
    redis_server, writer: WriteThroughStore, tenant
) -> None:
    small, big = f"{tenant}-small", f"{tenant}-big"
    await writer.put_many(entries(small, unit_vectors(50, seed=5), "s"))
    await writer.put_many(entries(big, unit_vectors(150, seed=6), "b"))
    s = await shard(redis_server.url)
    try:
        await s.namespace(small)
        await s.namespace(big)
        await settle(s)
        assert await writer.snapshot_manifest(small) is None
        assert await writer.snapshot_manifest(big) is not None
        await s.invalidate_namespace(big)
        assert await writer.snapshot_manifest(big) is None
        client = writer._client
        assert client is not None
        assert not [k async for k in client.scan_iter(match=f"*{big}*graph*")]
        assert not await client.exists(graph_key(big))
    finally:
        await s.aclose()


async def test_a_snapshot_of_another_model_is_not_used(
    redis_server, writer: WriteThroughStore, tenant
) -> None:
    namespace = f"{tenant}-other-model"
    stored = entries(namespace, unit_vectors(200, seed=7), "m")
    await writer.put_many(stored)
    await saved_by_a_shard(redis_server.url, namespace)
    for e in stored:  # every entry re-embedded by another model since
        e.model = "newer-model"
        await writer.revector(e)
    owner = await shard(redis_server.url)
    try:
        ns = await owner.namespace(namespace)
        assert owner.graphs.restored == 0 and ns.model == "newer-model"
        assert all(e.vector is not None for e in ns)
    finally:
        await owner.aclose()


async def test_a_graph_changed_enough_is_saved_again(
    redis_server, writer: WriteThroughStore, tenant
) -> None:
    namespace = f"{tenant}-growing"
    await writer.put_many(entries(namespace, unit_vectors(200, seed=8), "a"))
    s = await shard(redis_server.url)
    try:
        ns = await s.namespace(namespace)
        await settle(s)
        added = entries(namespace, unit_vectors(999, seed=9), "b")
        for e in added:
            ns.add(e)
        assert await s.graphs.save_changed([ns]) == 0  # 999 changes: not yet worth it
        ns.add(entries(namespace, unit_vectors(1, seed=10), "c")[0])
        assert await s.graphs.save_changed([ns]) == 1 and ns.changes == 0
        manifest = await writer.snapshot_manifest(namespace)
        assert manifest is not None and manifest.entries == 1200
    finally:
        await s.aclose()
