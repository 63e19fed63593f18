"""The shard's pure parts: index, eviction, single-flight."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
import numpy as np
import pytest
from prometheus_client import REGISTRY

from cache_svc.embedder import EmbedderClient, EmbedderUnavailableError
from cache_svc.eviction import LFU, LRU, Capacity, Semantic, make_eviction
from cache_svc.index import IndexParams, NamespaceIndex
from cache_svc.singleflight import SingleFlight
from embed_svc.service import running_embedder
from semcache.runtime.breaker import CircuitBreaker
from semcache.runtime.validation import EMBED_TEXT_MAX_BYTES
from semcache.v1 import embedder_pb2, embedder_pb2_grpc
from tests.conftest import GatedModel, embedder_config, eventually


def unit_vectors(n: int, dim: int = 384, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_index_finds_the_vector_itself_and_grows_past_its_capacity() -> None:
    index = NamespaceIndex(IndexParams(initial_capacity=8))
    vectors = unit_vectors(100)
    for label, vector in enumerate(vectors):
        index.add(label, vector)
    assert len(index) == 100
    for label in (0, 57, 99):
        (best, similarity), *_ = index.search(vectors[label], k=2)
        assert best == label and similarity == pytest.approx(1.0, abs=1e-5)


def test_index_removal_hides_the_entry_and_its_slot_is_reused() -> None:
    index = NamespaceIndex(IndexParams(initial_capacity=4))
    vectors = unit_vectors(5)
    for label in range(4):
        index.add(label, vectors[label])
    index.remove(2)
    assert 2 not in [label for label, _ in index.search(vectors[2], k=3)]
    index.add(4, vectors[4])  # reuses the deleted slot: no resize needed
    assert index._graph.max_elements == 4
    assert index.search(vectors[4], k=1)[0][0] == 4


def test_bulk_load_is_searchable_before_and_after_the_graph_is_built() -> None:
    index = NamespaceIndex()
    vectors = unit_vectors(300)
    index.start_bulk_load(np.arange(300), vectors[:300])
    assert index.building
    index.add(1000, unit_vectors(1, seed=9)[0])
    index.remove(5)
    before = index.search(vectors[7], k=1)
    index.build()
    assert not index.building
    after = index.search(vectors[7], k=1)
    assert before[0][0] == after[0][0] == 7
    assert 5 not in [label for label, _ in index.search(vectors[5], k=5)]
    assert index.search(unit_vectors(1, seed=9)[0], k=1)[0][0] == 1000
    assert len(index) == 300


def test_lru_evicts_the_least_recently_used() -> None:
    lru = LRU(Capacity(max_entries=2, max_bytes=10**9))
    for entry_id in ("a", "b"):
        lru.added(entry_id, 10)
    lru.used("a")
    lru.added("c", 10)
    assert lru.victims() == ["b"]


def test_lfu_evicts_the_least_used_and_counts_bytes() -> None:
    lfu = LFU(Capacity(max_entries=100, max_bytes=25))
    for entry_id in ("a", "b", "c"):
        lfu.added(entry_id, 10)
    lfu.used("a")
    lfu.used("c")
    lfu.used("c")
    assert lfu.victims() == ["b"]
    lfu.removed("b")
    assert lfu.victims() == [] and lfu.bytes == 20


def test_semantic_eviction_gives_a_newcomer_probation_before_taking_it() -> None:
    # Never forgetting, the semantic policy ranks as LFU does; its probation holds 2 here.
    semantic = Semantic(Capacity(max_entries=20, max_bytes=10**9), half_lives=[None])
    lfu = LFU(Capacity(max_entries=20, max_bytes=10**9))
    for policy in (semantic, lfu):
        for i in range(20):
            policy.added(f"old{i}", 10)
            policy.used(f"old{i}")
        policy.added("first", 10)
        assert policy.victims() == ["first"]  # the lowest, with nothing on probation before it
        policy.removed("first")
        policy.added("second", 10)
    # LFU takes every newcomer before anything hit once; the semantic policy the longest on
    # probation: "second" has till the next eviction to be asked again.
    assert lfu.victims() == ["second"]
    assert semantic.victims() == ["old0"]
    semantic.removed("old0")
    semantic.used("second")  # asked again: off probation, worth two now
    semantic.added("third", 10)
    assert semantic.victims() == ["third"]
    semantic.removed("third")
    semantic.added("fourth", 10)
    assert semantic.victims() == ["old1"]  # the next least recently used of the twos


def test_semantic_eviction_takes_beyond_probation_when_more_must_go() -> None:
    semantic = Semantic(Capacity(max_entries=100, max_bytes=25), half_lives=[None])
    for entry_id in ("a", "b", "c", "d"):
        semantic.added(entry_id, 10)
    semantic.used("a")
    # Probation holds one (a tenth of the four held, at least one); 20 bytes must go: b, c.
    assert semantic.victims() == ["b", "c"]
    for victim in ("b", "c"):
        semantic.removed(victim)
    assert semantic.victims() == [] and semantic.bytes == 20 and semantic.entries == 2


def _store(policy: Semantic, entry_id: str) -> None:
    policy.added(entry_id, 10)
    for victim in policy.victims():
        policy.removed(victim)


def test_semantic_eviction_forgets_once_plain_frequency_misjudges() -> None:
    semantic = Semantic(Capacity(max_entries=20, max_bytes=10**9), half_lives=[8, None])
    assert semantic.half_life is None  # it follows the last ranking until another does better
    for i in range(20):
        semantic.added(f"old{i}", 10)
        for _ in range(3):
            semantic.used(f"old{i}")
    # What users ask changes: each new entry is asked again right after it is stored. Plain
    # frequency has the newcomers on probation, the forgetting ranking the idle old entries:
    # each hit on a newcomer still held is a misjudgement of plain frequency.
    for i in range(2):
        _store(semantic, f"new{i}")
        semantic.used(f"new{i}")
    assert semantic.half_life is None  # one misjudgement (new1's hit) is within chance
    for i in range(2, 4):
        _store(semantic, f"new{i}")
        semantic.used(f"new{i}")
    assert semantic.half_life == 8  # two against none: more than one standard deviation
    # Misjudgements fade by half every 8 x capacity events (a store or a hit each).
    frequency = semantic._rankings[1]
    before = frequency.misjudged
    for _ in range(8 * 20):
        semantic.used("new3")
    assert frequency.misjudged == pytest.approx(before / 2)


def test_semantic_eviction_stops_forgetting_once_that_misjudges() -> None:
    semantic = Semantic(Capacity(max_entries=20, max_bytes=10**9), half_lives=[None, 8])
    assert semantic.half_life == 8
    for i in range(15):
        semantic.added(f"hot{i}", 10)
        semantic.used(f"hot{i}")
    for i in range(5):
        semantic.added(f"cold{i}", 10)
    # A steady stream: fifteen questions asked two at a time in turn, a miss between each
    # two never asked again. Forgetting fast has the least recently asked on probation:
    # the next ones asked.
    for i in range(2):
        _store(semantic, f"once{i}")
        semantic.used(f"hot{2 * i}")
        semantic.used(f"hot{2 * i + 1}")
        assert semantic.half_life == (8 if i == 0 else None)


def test_semantic_eviction_shares_an_entrys_traffic_with_its_newer_paraphrases() -> None:
    semantic = Semantic(Capacity(max_entries=2, max_bytes=10**9), half_lives=[None])
    lfu = LFU(Capacity(max_entries=2, max_bytes=10**9))
    for policy in (semantic, lfu):
        policy.added("a", 10)
        policy.used("a")
        policy.added("b", 10, neighbours=["a"])  # a would answer b's prompt: a paraphrase
        policy.added("c", 10)
        policy.used("c")
    # LFU takes b, never hit. The semantic policy shares a's two events with b (worth 1,
    # as b's own store: the newer one's is not shared): of the two, the least recently used.
    assert lfu.victims() == ["b"]
    assert semantic.victims() == ["a"]
    # Once b is gone (invalidated, say), a has its traffic to itself again: worth 2.
    semantic = Semantic(Capacity(max_entries=2, max_bytes=10**9), half_lives=[None])
    semantic.added("a", 10)
    semantic.added("b", 10, neighbours=["a"])
    semantic.used("a")
    semantic.removed("b")
    _store(semantic, "c")
    semantic.added("d", 10)
    assert semantic.victims() == ["c"]
    semantic.removed("c")
    semantic.added("e", 10)
    for entry_id in ("d", "e", "d", "e"):  # worth 3 each, above a's 2: a goes now
        semantic.used(entry_id)
    assert semantic.victims() == ["a"]


def test_semantic_eviction_moves_each_rankings_probation_as_far() -> None:
    semantic = Semantic(Capacity(max_entries=20, max_bytes=10**9), half_lives=[None, 8])
    for i in range(20):
        semantic.added(f"old{i}", 10)
        semantic.used(f"old{i}")
    semantic.added("new", 10)
    frequency = semantic._rankings[0]
    # The followed ranking (forgetting) takes the longest on its probation; plain frequency,
    # not followed, had "new" longest on its own: it lets it go as far, so that each is
    # judged on the entries it would still hold.
    assert semantic.victims() == ["old0"]
    assert "new" not in frequency.probation and "old0" in frequency.probation


def test_semantic_eviction_refuses_a_half_life_that_is_not_positive() -> None:
    with pytest.raises(ValueError, match="half_lives"):
        Semantic(Capacity(), half_lives=[0, None])
    with pytest.raises(ValueError, match="half_lives"):
        Semantic(Capacity(), half_lives=[])


# LFU keeps "quiet" (used once, "new" never), as does the semantic policy when it never
# forgets. Halving every 8 events instead, quiet's store 20,000 events ago weighs nothing
# any more, its use one event before new's store 2^(-1/8) of that store: "quiet" goes.
@pytest.mark.parametrize(
    ("policy", "victim"),
    [
        (LFU, "new"),
        (lambda capacity: Semantic(capacity, half_lives=[None]), "new"),
        (lambda capacity: Semantic(capacity, half_lives=[8]), "quiet"),
        (Semantic, "new"),  # it follows plain frequency until a ranking misjudges
    ],
)
def test_an_entry_hit_again_and_again_does_not_grow_the_eviction_heap(policy, victim) -> None:
    tracker = policy(Capacity(max_entries=2, max_bytes=10**9))
    tracker.added("busy", 10)
    tracker.added("quiet", 10)
    for _ in range(20_000):
        tracker.used("busy")
    tracker.used("quiet")
    # Each use pushed a row; stale ones are dropped once they outnumber the live 4 to 1.
    for heap in [r._heap for r in getattr(tracker, "_rankings", [tracker])]:
        assert len(heap) <= 4 * 2 + 1024 + 1
    tracker.added("new", 10)
    assert tracker.victims() == [victim]  # the compacted heap still orders by worth


def test_unknown_eviction_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="lru, lfu, semantic"):
        make_eviction("random", Capacity())


async def test_single_flight_runs_once_for_concurrent_callers() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    calls = 0

    async def work() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return 42

    results = await asyncio.gather(*(flight.run("k", work) for _ in range(50)))
    assert calls == 1
    assert [value for value, _ in results] == [42] * 50
    assert sum(coalesced for _, coalesced in results) == 49
    assert not flight.in_flight("k")


async def test_single_flight_survives_a_cancelled_leader() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    release = asyncio.Event()

    async def work() -> str:
        await release.wait()
        return "done"

    leader = asyncio.create_task(flight.run("k", work))
    await asyncio.sleep(0)
    follower = asyncio.create_task(flight.run("k", work))
    await asyncio.sleep(0)
    leader.cancel()
    release.set()
    assert await follower == ("done", True)


def vector_cache_hits() -> float:
    return REGISTRY.get_sample_value("semcache_vector_cache_total", {"result": "hit"}) or 0.0


async def test_the_embedder_client_remembers_recent_vectors(embedder_address) -> None:
    client = EmbedderClient(embedder_address, timeout=2, cache_entries=2)
    try:
        first = await client.embed("How do I renew my passport?")
        await client.embed("What is the capital of Peru?")
        hits = vector_cache_hits()
        again = await client.embed("How do I renew my passport?")
        assert again is first and vector_cache_hits() == hits + 1  # no embedder call
    finally:
        await client.aclose()


async def test_the_vector_cache_keeps_only_the_most_recent(embedder_address) -> None:
    client = EmbedderClient(embedder_address, timeout=2, cache_entries=2)
    try:
        for text in ("one text", "another text", "one text", "a third text"):
            await client.embed(text)
        hits = vector_cache_hits()
        await client.embed("one text")  # used again before the third came: kept
        await client.embed("a third text")
        assert vector_cache_hits() == hits + 2
        await client.embed("another text")  # the least recently used: dropped, fetched again
        assert vector_cache_hits() == hits + 2
        assert await client.embed("x" * 3000) is not await client.embed("x" * 3000)  # too long
    finally:
        await client.aclose()


async def test_a_renewed_stream_still_answers_what_the_old_one_carried(model) -> None:
    """Streams are renewed every `stream_seconds` (0: every text); a text in flight on the
    old stream still gets its vector."""
    gated = GatedModel(model)
    async with running_embedder(embedder_config(workers=1), gated) as server:
        client = EmbedderClient(server.address, timeout=10, cache_entries=0, stream_seconds=0)
        try:
            held = asyncio.create_task(client.embed("sent on the first stream"))
            await eventually(lambda: gated.batches == [1])
            later = asyncio.create_task(client.embed("sent on the second stream"))
            await asyncio.sleep(0)  # its first step: the old stream finishing, a new one open
            gated.gate.set()
            first, second = await held, await later
            assert gated.batches == [1, 1]
            assert first.values.shape == second.values.shape == (384,)
            assert first.model == second.model == model.model_id
            assert float(first.values @ second.values) < 0.99
            assert await client.embed("a third stream") is not None
        finally:
            await client.aclose()


async def test_a_stream_cut_under_a_text_fails_it_at_once(model) -> None:
    """The embedder going away fails the texts in flight now (the shard then degrades), not
    after the client's timeout."""
    gated = GatedModel(model)
    async with running_embedder(embedder_config(workers=1), gated) as server:
        client = EmbedderClient(server.address, timeout=30, cache_entries=0)
        try:
            held = asyncio.create_task(client.embed("in flight when the embedder stops"))
            await eventually(lambda: bool(gated.batches))
            await server.stop()
            async with asyncio.timeout(5):
                with pytest.raises(EmbedderUnavailableError):
                    await held
            assert not client.healthy
        finally:
            gated.gate.set()  # (the worker still holds the text)
            await client.aclose()


async def test_streams_younger_than_the_grace_survive_connection_recycling(model) -> None:
    """An embedder with a connection age limit sends GOAWAY, then cuts the streams left after
    its grace period; renewing streams more often than that grace loses no text."""
    config = embedder_config(max_connection_age_seconds=0.3, grace_seconds=0.6)
    async with running_embedder(config, model) as server:
        client = EmbedderClient(server.address, timeout=5, cache_entries=0, stream_seconds=0.2)
        try:
            loop = asyncio.get_running_loop()
            until = loop.time() + 2.5  # several connection lifetimes
            sent = 0
            while loop.time() < until:
                await client.embed(f"text number {sent}")  # raises if a stream was cut
                sent += 1
            assert sent > 100
        finally:
            await client.aclose()


async def test_a_text_longer_than_the_embedder_takes_gets_the_vector_of_its_head(
    model,
) -> None:
    """The model reads only a text's first tokens: the client sends what an embedder takes
    by default (32 KiB) and gets the vector the whole text has, as an embedder that takes
    the whole text embeds it."""
    text = "How do I rotate the logs of a busy web server? " + "détail " * 6000
    size = len(text.encode())
    assert size > EMBED_TEXT_MAX_BYTES
    async with running_embedder(embedder_config(max_text_bytes=2 * size), model) as server:
        client = EmbedderClient(server.address, timeout=5, cache_entries=0)
        try:
            sent = await client.embed(text)  # clipped to 32 KiB on the way
            async with grpc.aio.insecure_channel(server.address) as channel:
                whole = await embedder_pb2_grpc.EmbedderStub(channel).Embed(
                    embedder_pb2.EmbedRequest(texts=[text])
                )
            vector = np.frombuffer(whole.embeddings[0].vector, dtype="<f4")
            assert whole.embeddings[0].truncated  # the model read only the head
            assert float(sent.values @ vector) > 0.9999
            assert client.breaker.closed and client.healthy
        finally:
            await client.aclose()


async def test_a_refused_text_does_not_open_the_circuit(model) -> None:
    """An embedder refusing a text (INVALID_ARGUMENT: here one over its lowered byte limit)
    is not failing: the circuit stays closed and other texts still get their vectors."""
    async with running_embedder(embedder_config(max_text_bytes=1000), model) as server:
        breaker = CircuitBreaker(failures_to_open=2)
        client = EmbedderClient(server.address, timeout=5, cache_entries=0, breaker=breaker)
        try:
            for _ in range(3):
                with pytest.raises(EmbedderUnavailableError, match="INVALID_ARGUMENT"):
                    await client.embed("word " * 400)
            assert client.breaker.closed and client.healthy
            assert (await client.embed("a short text")).values.shape == (384,)
        finally:
            await client.aclose()


class SlowModel:
    """The real model, each batch taking `seconds` longer: an embedder that answers steadily
    but more slowly than a burst of texts arrives."""

    def __init__(self, model: Any, seconds: float) -> None:
        self._model, self.seconds = model, seconds
        self.model_id, self.dimension, self.built = model.model_id, model.dimension, model.built

    def tokenize(self, texts: list[str]) -> Any:
        return self._model.tokenize(texts)

    def run(self, batch: Any) -> np.ndarray:
        time.sleep(self.seconds)
        return self._model.run(batch)


async def test_a_busy_embedder_is_not_taken_for_a_stuck_one(model) -> None:
    """A burst queued on one worker: texts at the back time out, but vectors keep coming,
    so the circuit stays closed (it opens only after a whole timeout of silence)."""
    config = embedder_config(workers=1, max_batch_texts=1)
    async with running_embedder(config, SlowModel(model, 0.15)) as server:
        breaker = CircuitBreaker(failures_to_open=2)
        client = EmbedderClient(server.address, timeout=0.4, cache_entries=0, breaker=breaker)
        try:
            results = await asyncio.gather(
                *(client.embed(f"burst text {i}") for i in range(8)), return_exceptions=True
            )
            timed_out = [r for r in results if isinstance(r, EmbedderUnavailableError)]
            assert timed_out and len(timed_out) < len(results)
            assert client.breaker.closed and client.breaker.times_opened == 0
        finally:
            await client.aclose()
