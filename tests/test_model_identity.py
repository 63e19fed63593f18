"""Model identity: a shard never compares vectors of two models, and moves what it stores
to the embedders' newer model in the background (real embedders, shard, redis-server).

The test models are the real one under other ids, with a twist that makes a comparison
across models show: model B embeds TRAP as if it were STORED (and STORED as something
else). Within B, TRAP and STORED are far apart, as they are within A; but B's vector of
TRAP against A's vector of STORED is a perfect match. A shard that compared the two would
serve STORED's answer for TRAP.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import numpy as np
import pytest
import redis.asyncio as aioredis

from cache_svc.entry import Answer
from cache_svc.service import running_shard
from cache_svc.shard import Query, Shard
from cache_svc.store import entry_key, ids_key
from embed_svc.build import recipe
from embed_svc.model import OnnxEmbedder, Tokens
from embed_svc.models import ModelSet, ModelWatcher
from embed_svc.service import running_embedder
from semcache import keys
from semcache.dev.probe import free_port
from semcache.runtime.server import GrpcServer
from semcache.v1 import cache_pb2
from tests.conftest import embedder_config, eventually, shard_config

STORED = "How do I reset my router to factory settings?"
TRAP = "What is a good hydration for pizza dough?"
ELSEWHERE = "Which planets have rings?"
#: Stored with STORED; their paraphrases must keep hitting through the switch.
OTHERS = {
    "What is the capital city of Australia?": "What's Australia's capital?",
    "How can I undo my last git commit?": "how to undo the last git commit",
}


class RenamedModel:
    """The real model under another id; texts in `aliases` are embedded as another text."""

    def __init__(
        self, real: OnnxEmbedder, model_id: str, built: float, aliases: dict[str, str] | None = None
    ) -> None:
        self._real = real
        self.model_id, self.built, self.dimension = model_id, built, real.dimension
        self.aliases = aliases or {}

    def tokenize(self, texts: list[str]) -> list[Tokens]:
        return self._real.tokenize([self.aliases.get(t, t) for t in texts])

    def run(self, batch: list[Tokens]) -> np.ndarray:
        return self._real.run(batch)


@pytest.fixture(scope="module")
def models(model: OnnxEmbedder) -> dict[str, RenamedModel]:
    twisted = {TRAP: STORED, STORED: ELSEWHERE}
    return {
        "a": RenamedModel(model, "test-a-int8-0001", built=1000.0),
        "b": RenamedModel(model, "test-b-int8-0002", built=2000.0, aliases=twisted),
        "c": RenamedModel(model, "test-c-int8-0003", built=3000.0, aliases=twisted),
    }


def model_set(server: GrpcServer) -> ModelSet:
    return server.services[0].servicer.models  # type: ignore[attr-defined]


@contextlib.asynccontextmanager
async def shard_on(embedder: str, redis_url: str, **overrides: object) -> AsyncIterator[Shard]:
    config = shard_config(embedder=embedder, redis=redis_url, **overrides)
    async with running_shard(config) as (_, shard):
        yield shard


def namespace(tenant: str) -> str:
    return keys.namespace_key(cache_pb2.Scope(tenant=tenant))


def query(tenant: str, prompt: str) -> Query:
    return Query(namespace=namespace(tenant), tenant=tenant, prompt=prompt)


async def kind(shard: Shard, tenant: str, prompt: str) -> str:
    outcome = await shard.lookup(query(tenant, prompt))
    return f"{outcome.status} {outcome.kind}".strip()


async def stored_models(redis_url: str, tenant: str) -> set[str]:
    client = aioredis.from_url(redis_url)
    try:
        key = namespace(tenant)
        ids = await client.smembers(ids_key(key))
        return {
            (await client.hget(entry_key(key, i.decode()), "model") or b"").decode() for i in ids
        }
    finally:
        await client.aclose()


async def test_a_model_switch_moves_every_entry_and_never_mixes_models(
    models, redis_server, tenant
) -> None:
    a, b, c = models["a"], models["b"], models["c"]
    async with running_embedder(embedder_config(), a) as embedder:
        # reembed_rate 0: the test runs the background re-embedding itself, step by step.
        async with shard_on(embedder.address, redis_server.url, reembed_rate=0) as shard:
            for prompt in (STORED, *OTHERS):
                await shard.store_answer(query(tenant, prompt), Answer(f"answer to {prompt}"))
            assert await stored_models(redis_server.url, tenant) == {a.model_id}
            assert await kind(shard, tenant, TRAP) == "miss"
            for paraphrase in OTHERS.values():
                assert await kind(shard, tenant, paraphrase) == "hit semantic"

            # B is built and becomes current; A stays held for callers that name it.
            await model_set(embedder).add(b)
            assert await kind(shard, tenant, "a text that teaches the shard about B") == "miss"
            assert shard.stats()["model"] == b.model_id
            assert shard.stats()["reembed_pending"] == 3
            for paraphrase in OTHERS.values():  # still asked in A, against A's vectors
                assert await kind(shard, tenant, paraphrase) == "hit semantic"
            assert await kind(shard, tenant, TRAP) == "miss"

            # C comes, A goes (the set holds two): a request for A's vectors now gets C's.
            await model_set(embedder).add(c)
            assert a.model_id not in model_set(embedder).ids()
            assert await kind(shard, tenant, "a text that teaches the shard about C") == "miss"
            assert shard.stats()["model"] == c.model_id
            for _ in range(3):  # C's TRAP against A's STORED would be a perfect match
                shard.embedder._cache.clear()  # asked anew, not A's vector from before
                assert await kind(shard, tenant, TRAP) == "miss"
            assert await kind(shard, tenant, STORED) == "hit exact"  # exact hits never stop

            assert await shard.reembed(budget=2) == 2  # bounded per round
            assert shard.stats()["reembed_pending"] == 1
            assert await shard.reembed(budget=10) == 1
            stats = shard.stats()
            assert (stats["model"], stats["reembed_pending"], stats["reembedded"]) == (
                c.model_id,
                0,
                3,
            )
            assert await stored_models(redis_server.url, tenant) == {c.model_id}
            for paraphrase in OTHERS.values():  # now within C
                assert await kind(shard, tenant, paraphrase) == "hit semantic"
            assert await kind(shard, tenant, TRAP) == "miss"

        # A restarted shard hydrates C's vectors and needs nothing re-embedded.
        async with shard_on(embedder.address, redis_server.url, reembed_rate=0) as again:
            for paraphrase in OTHERS.values():
                assert await kind(again, tenant, paraphrase) == "hit semantic"
            assert await kind(again, tenant, TRAP) == "miss"
            assert again.stats()["reembed_pending"] == 0


async def test_two_embedders_side_by_side_a_rolling_upgrade(models, redis_server, tenant) -> None:
    """A new embedder joins the old one behind one address (round robin), as pods of a
    rolling upgrade do: whichever answers, no hit compares two models, and the shard's
    entries move to the newer model."""
    a, b = models["a"], models["b"]
    new_port = free_port()
    async with running_embedder(embedder_config(), a) as old:
        both = f"ipv4:{old.address},127.0.0.1:{new_port}"
        async with shard_on(both, redis_server.url, reembed_rate=200) as shard:
            for prompt in (STORED, *OTHERS):
                await shard.store_answer(query(tenant, prompt), Answer(f"answer to {prompt}"))
            assert await stored_models(redis_server.url, tenant) == {a.model_id}
            async with running_embedder(embedder_config(port=new_port), b):

                async def moved() -> bool:
                    shard.embedder._cache.clear()  # every lookup asks an embedder
                    assert await kind(shard, tenant, TRAP) == "miss"
                    assert await kind(shard, tenant, STORED) == "hit exact"
                    stats = shard.stats()
                    return (
                        stats["model"] == b.model_id
                        and stats["reembed_pending"] == 0
                        and await stored_models(redis_server.url, tenant) == {b.model_id}
                    )

                await eventually(moved, within=60)
                hits = [await kind(shard, tenant, p) for p in OTHERS.values() for _ in range(4)]
                assert "hit semantic" in hits  # when the new embedder answers: B against B
                assert set(hits) <= {"hit semantic", "miss"}  # the old one's: no compare


async def test_vectors_of_another_model_are_never_searched() -> None:
    from cache_svc.entry import Entry
    from cache_svc.namespace import Namespace

    ns = Namespace("ns", model="m1")
    vector = np.ones(384, dtype=np.float32) / np.sqrt(384)
    entry = Entry(
        id="ns.1",
        namespace="ns",
        tenant="t",
        prompt="p",
        prompt_key="k",
        answer=Answer("x"),
        category="default",
        created=0.0,
        expires=1e12,
        vector=vector,
        model="m2",
    )
    ns.add(entry)
    assert ns.nearest(vector, "m2", now=1.0) == [] and ns.nearest(vector, "m1", now=1.0) == []
    ns.switch_model("m2")
    assert [c.entry.id for c in ns.nearest(vector, "m2", now=1.0)] == ["ns.1"]
    assert ns.nearest(vector, "m1", now=1.0) == []
    await asyncio.sleep(0)


async def test_the_embedder_switches_to_the_tuned_model_once_it_is_built(
    tmp_path, monkeypatch
) -> None:
    """`make run` serves the stock model until the tuned one is built, then switches without
    a restart: a cache where only the stock model is built, then the tuned one appears."""
    built = {name: rec.model_dir() for name, rec in recipe.RECIPES.items()}  # the real cache
    assert all(recipe.is_complete(d) for d in built.values()), "`make model` builds both"
    monkeypatch.setenv("SEMCACHE_CACHE_DIR", str(tmp_path))
    (tmp_path / "models").mkdir()
    recipe.STOCK.model_dir().symlink_to(built["stock"])
    async with running_embedder(embedder_config(model_watch_seconds=0)) as server:
        models = model_set(server)
        watcher = ModelWatcher(models)
        assert not await watcher.check()  # nothing better is built yet
        assert models.current.model.model_id == recipe.STOCK.model_id()
        recipe.TUNED.model_dir().symlink_to(built["tuned"])  # the background build is done
        assert await watcher.check()
        assert models.current.model.model_id == recipe.TUNED.model_id()
        assert models.ids() == [recipe.STOCK.model_id(), recipe.TUNED.model_id()]
        assert not await watcher.check()  # once
