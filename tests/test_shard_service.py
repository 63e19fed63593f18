"""A cache shard over real gRPC, with the real embedder and a real redis-server."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest
import redis.asyncio as aioredis

from cache_svc.llm import EchoBackend
from cache_svc.service import running_shard
from cache_svc.shard import Shard
from cache_svc.store import MAX_CONNECTIONS, entry_key, ids_key
from semcache import keys
from semcache.quality.features import FEATURES
from semcache.quality.policy import VETO, HitPolicy, LogisticModel
from semcache.v1 import cache_pb2, cache_pb2_grpc
from tests.conftest import eventually, shard_config

HIT, MISS, BYPASS = (
    cache_pb2.CACHE_STATUS_HIT,
    cache_pb2.CACHE_STATUS_MISS,
    cache_pb2.CACHE_STATUS_BYPASS,
)


@dataclass
class ShardUnderTest:
    stub: cache_pb2_grpc.SemanticCacheStub
    admin: cache_pb2_grpc.AdminStub
    shard: Shard
    echo: EchoBackend
    address: str


@contextlib.asynccontextmanager
async def serving(
    embedder_address: str,
    redis_url: str | None,
    echo: EchoBackend | None = None,
    **overrides: object,
) -> AsyncIterator[ShardUnderTest]:
    echo = echo or EchoBackend()
    config = shard_config(embedder=embedder_address, redis=redis_url, **overrides)
    async with (
        running_shard(config, llm=echo) as (server, shard),
        grpc.aio.insecure_channel(server.address) as channel,
    ):
        yield ShardUnderTest(
            cache_pb2_grpc.SemanticCacheStub(channel),
            cache_pb2_grpc.AdminStub(channel),
            shard,
            echo,
            server.address,
        )


@pytest.fixture
async def shard(embedder_address, redis_server) -> AsyncIterator[ShardUnderTest]:
    async with serving(embedder_address, redis_server.url) as running:
        yield running


def complete(tenant: str, prompt: str, **fields) -> cache_pb2.CompleteRequest:
    scope = fields.pop("scope", cache_pb2.Scope(tenant=tenant, model="m"))
    return cache_pb2.CompleteRequest(scope=scope, prompt=prompt, **fields)


def lookup(tenant: str, prompt: str, **fields) -> cache_pb2.LookupRequest:
    scope = fields.pop("scope", cache_pb2.Scope(tenant=tenant, model="m"))
    return cache_pb2.LookupRequest(scope=scope, prompt=prompt, **fields)


async def test_paraphrase_hits_and_unrelated_misses(shard, tenant) -> None:
    first = await shard.stub.Complete(complete(tenant, "How do I reset my password?"))
    assert first.cache.status == MISS and first.cache.stored
    assert (
        first.answer.text
        == "echo[m/"
        + first.answer.text.split("/")[1].split("]")[0]
        + "]: How do I reset my password?"
    )
    hit = await shard.stub.Lookup(lookup(tenant, "How can I reset my password?"))
    assert hit.cache.status == HIT and hit.cache.kind == cache_pb2.MATCH_KIND_SEMANTIC
    floor = HitPolicy.default().thresholds["default"]
    assert hit.cache.similarity >= hit.cache.threshold >= floor
    assert hit.cache.entry_id == first.cache.entry_id
    assert hit.cache.matched_prompt == "How do I reset my password?"
    assert hit.answer.text == first.answer.text
    assert hit.cache.shard == "shard-0" and hit.cache.timings.embed_ms > 0
    miss = await shard.stub.Lookup(lookup(tenant, "What is the best pizza in Naples?"))
    assert miss.cache.status == MISS and miss.cache.similarity < 0.9
    assert not miss.HasField("answer")


async def test_exact_repeat_skips_the_embedder(shard, tenant) -> None:
    await shard.stub.Complete(complete(tenant, "What is the capital of Australia?"))
    repeat = await shard.stub.Lookup(lookup(tenant, "what is the capital of australia"))
    assert repeat.cache.status == HIT and repeat.cache.kind == cache_pb2.MATCH_KIND_EXACT
    assert repeat.cache.similarity == 1.0
    assert repeat.cache.timings.embed_ms == 0


@pytest.mark.parametrize(
    "other",
    [
        {"tenant": "other"},
        {"model": "m2"},
        {"system_prompt": "You are a chef."},
        {"params": cache_pb2.GenerationParams(temperature=1.0)},
        {"history": [cache_pb2.Turn(role="user", content="earlier")]},
    ],
    ids=["tenant", "model", "system_prompt", "params", "history"],
)
async def test_no_hit_across_any_scope_field(shard, tenant, other) -> None:
    base = {"tenant": tenant, "model": "m", "system_prompt": "You are a doctor."}
    prompt = "What should I do about a headache?"
    await shard.stub.Complete(complete(tenant, prompt, scope=cache_pb2.Scope(**base)))
    fields = base | other
    if "tenant" in other:
        fields["tenant"] = tenant + "-other"
    response = await shard.stub.Lookup(lookup(tenant, prompt, scope=cache_pb2.Scope(**fields)))
    assert response.cache.status == MISS
    assert response.cache.similarity == 0.0  # that namespace holds nothing at all


async def test_entries_survive_a_shard_restart(embedder_address, redis_server, tenant) -> None:
    prompts = [
        "How do I configure single sign-on in the admin console?",
        "What is the boiling point of water at high altitude?",
        "Write a limerick about a cat who loves lasagna",
        "Which vitamins are found in spinach?",
        "How do I undo the last git commit but keep my changes?",
    ]
    async with serving(embedder_address, redis_server.url) as first:
        stored = [await first.stub.Complete(complete(tenant, p)) for p in prompts]
        assert all(s.cache.status == MISS for s in stored)
    async with serving(embedder_address, redis_server.url) as second:
        for prompt, original in zip(prompts, stored, strict=True):
            again = await second.stub.Lookup(lookup(tenant, prompt))
            assert again.cache.status == HIT
            assert again.cache.entry_id == original.cache.entry_id
            assert again.answer.text == original.answer.text
        paraphrase = await second.stub.Lookup(
            lookup(tenant, "How can I set up single sign-on in the admin console?")
        )
        assert paraphrase.cache.status == HIT
        assert second.echo.calls == 0


async def test_redis_outage_loses_nothing(embedder_address, redis_server, tenant) -> None:
    async with serving(embedder_address, redis_server.url) as running:
        before = await running.stub.Complete(complete(tenant, "Entry written before the outage"))
        redis_server.stop()
        during = [
            await running.stub.Complete(complete(tenant, prompt))
            for prompt in (
                "Do you ship to Iceland?",
                "Translate 'good morning' into Finnish",
                "Why is the sky blue?",
            )
        ]
        assert all(r.cache.status == MISS and r.cache.stored for r in during)
        assert "redis_unavailable" in during[-1].cache.degraded
        assert running.shard.store.backlog >= 3
        stats = await running.admin.Stats(cache_pb2.StatsRequest())
        assert stats.total.redis_state == "down" and stats.total.redis_backlog >= 3
        served = await running.stub.Lookup(lookup(tenant, "Entry written before the outage"))
        assert served.cache.status == HIT  # still answered from memory
        redis_server.start()
        await eventually(lambda: running.shard.store.state == "up", within=15)
        assert running.shard.store.backlog == 0
    async with serving(embedder_address, redis_server.url) as restarted:
        for original in [before, *during]:
            prompt = original.answer.text.split("]: ", 1)[1]
            again = await restarted.stub.Lookup(lookup(tenant, prompt))
            assert again.cache.status == HIT and again.cache.entry_id == original.cache.entry_id


async def test_concurrent_identical_misses_call_the_llm_once(
    embedder_address, redis_server, tenant
) -> None:
    async with serving(embedder_address, redis_server.url, EchoBackend(delay=0.3)) as running:
        request = complete(tenant, "Summarise the plot of Hamlet in one line")
        responses = await asyncio.gather(*(running.stub.Complete(request) for _ in range(50)))
        assert running.echo.calls == 1
        assert len({r.answer.text for r in responses}) == 1
        # One leader stores; the others waited for it (coalesced) or, on a slow machine,
        # arrived after it finished and hit its entry. None called the LLM again.
        assert sum(r.cache.stored for r in responses) == 1
        others = [r for r in responses if not r.cache.stored]
        assert all(r.cache.coalesced or r.cache.status == HIT for r in others)
        coalesced = sum(r.cache.coalesced for r in responses)
        assert coalesced >= 1
        stats = await running.admin.Stats(cache_pb2.StatsRequest())
        assert stats.total.coalesced == coalesced


async def test_callers_who_skip_the_cache_get_their_own_answers(
    embedder_address, redis_server, tenant
) -> None:
    """no_cache: the request may differ beyond the key (an image part), so no single-flight
    sharing, for Complete and for streams."""
    async with serving(embedder_address, redis_server.url, EchoBackend(delay=0.3)) as running:
        skip = cache_pb2.CacheControl(no_cache=True, no_store=True)
        request = complete(tenant, "What is in this picture?", cache_control=skip)

        async def stream() -> list:
            return [m async for m in running.stub.StreamComplete(request)]

        replies = await asyncio.gather(
            *(running.stub.Complete(request) for _ in range(3)), stream()
        )
        assert not any(r.cache.coalesced for r in replies[:3])
        assert running.echo.calls == 4


async def test_ttl_expiry(shard, tenant) -> None:
    control = cache_pb2.CacheControl(ttl_seconds=1)
    stored = await shard.stub.Complete(complete(tenant, "Short-lived fact", cache_control=control))
    assert (await shard.stub.Lookup(lookup(tenant, "Short-lived fact"))).cache.status == HIT
    async with aioredis.from_url(shard.shard.store.url) as r:
        namespace = keys.namespace_of(stored.cache.entry_id)
        assert 0 < await r.pttl(entry_key(namespace, stored.cache.entry_id)) <= 1000
    await asyncio.sleep(1.1)  # the TTL itself: time has to pass
    assert (await shard.stub.Lookup(lookup(tenant, "Short-lived fact"))).cache.status == MISS
    assert await shard.shard.sweep_expired() >= 1


async def test_max_age_and_cache_controls(shard, tenant) -> None:
    await shard.stub.Complete(complete(tenant, "How tall is Mount Everest?"))
    await asyncio.sleep(0.05)
    fresh_only = cache_pb2.CacheControl(max_age_seconds=0)
    response = await shard.stub.Lookup(
        lookup(tenant, "How tall is Mount Everest?", cache_control=fresh_only)
    )
    assert response.cache.status == MISS
    bypass = await shard.stub.Complete(
        complete(
            tenant,
            "How tall is Mount Everest?",
            cache_control=cache_pb2.CacheControl(no_cache=True),
        )
    )
    assert bypass.cache.status == BYPASS and shard.echo.calls == 2
    no_store = await shard.stub.Complete(
        complete(
            tenant,
            "A question never to be stored",
            cache_control=cache_pb2.CacheControl(no_store=True),
        )
    )
    assert no_store.cache.status == MISS and not no_store.cache.stored
    again = await shard.stub.Lookup(lookup(tenant, "A question never to be stored"))
    assert again.cache.status == MISS


CAPACITY_PROMPTS = [
    "Best hiking trails near Zurich",
    "How to descale an espresso machine",
    "Explain quantum entanglement simply",
    "Recipe for vegan lasagna",
    "What does HTTP status 418 mean?",
]


async def test_eviction_at_capacity_removes_everywhere(
    embedder_address, redis_server, tenant
) -> None:
    async with serving(embedder_address, redis_server.url, max_entries=3) as running:
        stored = [
            await running.stub.Complete(complete(tenant, prompt)) for prompt in CAPACITY_PROMPTS
        ]
        stats = await running.admin.Stats(cache_pb2.StatsRequest())
        assert stats.total.entries == 3 and stats.total.evictions == 2
        namespace = stored[0].cache.namespace
        survivors = {s.cache.entry_id for s in stored[2:]}
        # Evictions delete their Redis keys in the background: wait (bounded) for that.
        async with aioredis.from_url(redis_server.url) as r, asyncio.timeout(5):
            while {m.decode() for m in await r.smembers(ids_key(namespace))} != survivors:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        first = await running.stub.Lookup(lookup(tenant, CAPACITY_PROMPTS[0]))
        assert first.cache.status == MISS


async def test_semantic_eviction_takes_the_duplicate_of_a_busy_entry_first(
    embedder_address, redis_server, tenant
) -> None:
    """A look-aside caller stored a paraphrase of a cached prompt (B of A): the shard found
    A as its neighbour, so A's traffic is shared with B, busier; at capacity A goes, not the
    unused newcomer (without the neighbours it would be the newcomer; LFU takes it too)."""
    scope = cache_pb2.Scope(tenant=tenant, model="m")

    def store(prompt: str) -> cache_pb2.StoreRequest:
        answer = cache_pb2.Answer(text="Renew it online with form DS-82.")
        return cache_pb2.StoreRequest(scope=scope, prompt=prompt, answer=answer)

    async with serving(
        embedder_address, redis_server.url, max_entries=2, eviction="semantic"
    ) as running:
        a = await running.stub.Store(store("How do I renew my passport?"))
        assert (await running.stub.Lookup(lookup(tenant, "How do I renew my passport?"))).answer
        b = await running.stub.Store(store("How can I renew my passport?"))
        for _ in range(3):
            assert (
                await running.stub.Lookup(lookup(tenant, "How can I renew my passport?"))
            ).answer
        c = await running.stub.Store(store("What is the boiling point of water?"))
        kept = {
            (await running.stub.Lookup(lookup(tenant, prompt))).cache.entry_id
            for prompt in ("How can I renew my passport?", "What is the boiling point of water?")
        }
        assert kept == {b.entry_id, c.entry_id}
        assert a.entry_id not in kept


async def test_invalidate_entry_namespace_and_tenant(shard, tenant) -> None:
    a = await shard.stub.Complete(complete(tenant, "First question about invoices"))
    other_scope = cache_pb2.Scope(tenant=tenant, model="other")
    await shard.stub.Complete(complete(tenant, "Second question about invoices", scope=other_scope))
    await shard.stub.Complete(complete(tenant, "Third question about receipts"))
    removed = await shard.stub.Invalidate(
        cache_pb2.InvalidateRequest(scope=cache_pb2.Scope(tenant=tenant), entry_id=a.cache.entry_id)
    )
    assert removed.removed == 1
    assert (
        await shard.stub.Lookup(lookup(tenant, "First question about invoices"))
    ).cache.status == MISS
    with pytest.raises(grpc.aio.AioRpcError) as error:  # another tenant cannot name it
        await shard.stub.Invalidate(
            cache_pb2.InvalidateRequest(
                scope=cache_pb2.Scope(tenant="intruder"), entry_id=a.cache.entry_id
            )
        )
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    namespace = await shard.stub.Invalidate(
        cache_pb2.InvalidateRequest(
            target=cache_pb2.InvalidateRequest.TARGET_NAMESPACE,
            scope=cache_pb2.Scope(tenant=tenant, model="m"),
        )
    )
    assert namespace.removed == 1
    everything = await shard.stub.Invalidate(
        cache_pb2.InvalidateRequest(
            target=cache_pb2.InvalidateRequest.TARGET_TENANT, scope=cache_pb2.Scope(tenant=tenant)
        )
    )
    assert everything.removed == 1
    assert (
        await shard.stub.Lookup(lookup(tenant, "Second question about invoices", scope=other_scope))
    ).cache.status == MISS


async def test_feedback_on_a_wrong_hit_removes_it(shard, tenant) -> None:
    stored = await shard.stub.Complete(complete(tenant, "How do I enable 2FA?"))
    reply = await shard.stub.Feedback(
        cache_pb2.FeedbackRequest(
            scope=cache_pb2.Scope(tenant=tenant),
            entry_id=stored.cache.entry_id,
            verdict=cache_pb2.FeedbackRequest.VERDICT_WRONG_HIT,
            prompt="How do I disable 2FA?",
        )
    )
    assert reply.removed
    assert (await shard.stub.Lookup(lookup(tenant, "How do I enable 2FA?"))).cache.status == MISS
    async with aioredis.from_url(shard.shard.store.url) as r:
        namespace = stored.cache.namespace
        assert not await r.exists(entry_key(namespace, stored.cache.entry_id))
    stats = await shard.admin.Stats(cache_pb2.StatsRequest())
    assert stats.total.wrong_hits >= 1


async def test_stream_is_stored_and_replayed(shard, tenant) -> None:
    request = complete(tenant, "Tell me a short story about a lighthouse keeper")
    first = [chunk async for chunk in shard.stub.StreamComplete(request)]
    assert first[0].WhichOneof("event") == "start" and first[0].start.status == MISS
    deltas = [c.delta for c in first if c.WhichOneof("event") == "delta"]
    assert len(deltas) > 3
    end = first[-1].end
    assert end.finish_reason == "stop" and end.cache.stored and end.usage.total_tokens > 0
    second = [chunk async for chunk in shard.stub.StreamComplete(request)]
    assert second[0].start.status == HIT
    assert [c.delta for c in second if c.WhichOneof("event") == "delta"] == deltas
    assert second[-1].end.usage == end.usage
    assert shard.echo.calls == 1


async def test_a_stored_answer_is_replayed_in_chunks(shard, tenant) -> None:
    answer = cache_pb2.Answer(text="A complete answer that was never streamed at all.")
    await shard.stub.Store(
        cache_pb2.StoreRequest(
            scope=cache_pb2.Scope(tenant=tenant, model="m"), prompt="Explain caching", answer=answer
        )
    )
    chunks = [c async for c in shard.stub.StreamComplete(complete(tenant, "Explain caching"))]
    deltas = [c.delta for c in chunks if c.WhichOneof("event") == "delta"]
    assert len(deltas) > 1 and "".join(deltas) == answer.text


BAD = [
    (lookup("t", ""), "prompt: empty"),
    (lookup("t", "x" * 40000), "prompt: 40000 bytes, limit 32768"),
    (lookup("t", "hi", min_similarity=1.5), "min_similarity: must be a cosine similarity"),
    (lookup("t", "hi", min_similarity=float("nan")), "min_similarity: must be a cosine"),
    (
        lookup("t", "hi", cache_control=cache_pb2.CacheControl(max_age_seconds=-1)),
        "cache_control.max_age_seconds: must be >= 0",
    ),
    (lookup("t", "hi", scope=cache_pb2.Scope(tenant="a b")), "scope.tenant: must not contain"),
    (
        lookup(
            "t",
            "hi",
            scope=cache_pb2.Scope(params=cache_pb2.GenerationParams(temperature=float("inf"))),
        ),
        "scope.params.temperature: must be a finite number",
    ),
]


@pytest.mark.parametrize(("request_", "message"), BAD)
async def test_bad_input_is_invalid_argument(shard, request_, message) -> None:
    for call in (shard.stub.Lookup, shard.stub.Complete):
        payload = (
            request_
            if call is shard.stub.Lookup
            else cache_pb2.CompleteRequest(**{f.name: v for f, v in request_.ListFields()})
        )
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await call(payload)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert message in error.value.details()


async def test_missing_scope_fields_default_sensibly(shard) -> None:
    response = await shard.stub.Complete(cache_pb2.CompleteRequest(prompt="No scope at all"))
    assert response.cache.status in (MISS, HIT)
    default = keys.namespace_key(cache_pb2.Scope(tenant="default"))
    assert response.cache.namespace == default


async def test_bad_ids_and_targets(shard, tenant) -> None:
    cases = [
        (
            shard.stub.Invalidate(cache_pb2.InvalidateRequest(entry_id="nope")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "is not an entry id",
        ),
        (
            shard.stub.Invalidate(cache_pb2.InvalidateRequest()),
            grpc.StatusCode.INVALID_ARGUMENT,
            "target:",
        ),
        (
            shard.stub.Feedback(
                cache_pb2.FeedbackRequest(
                    entry_id=keys.new_entry_id("0" * 32),
                    verdict=cache_pb2.FeedbackRequest.VERDICT_WRONG_HIT,
                )
            ),
            grpc.StatusCode.NOT_FOUND,
            "no entry",
        ),
        (
            shard.stub.Store(cache_pb2.StoreRequest(prompt="p")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "answer: empty",
        ),
    ]
    for call, code, message in cases:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await call
        assert error.value.code() == code and message in error.value.details()


async def test_embedder_down_degrades_to_exact_match(redis_server, tenant) -> None:
    from semcache.dev.probe import free_port

    dead = f"127.0.0.1:{free_port()}"
    async with serving(dead, redis_server.url, embedder_timeout=0.5) as running:
        first = await running.stub.Complete(complete(tenant, "What time is it in Tokyo?"))
        assert first.cache.status == MISS and "embedder_unavailable" in first.cache.degraded
        repeat = await running.stub.Complete(complete(tenant, "What time is it in Tokyo?"))
        assert repeat.cache.status == HIT and repeat.cache.kind == cache_pb2.MATCH_KIND_EXACT
        assert running.echo.calls == 1


async def test_unknown_ids_leave_no_namespaces_behind(shard) -> None:
    before = (await shard.admin.Stats(cache_pb2.StatsRequest())).total.namespaces
    for i in range(20):
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await shard.stub.Feedback(
                cache_pb2.FeedbackRequest(
                    entry_id=keys.new_entry_id(f"{i:032x}"),
                    verdict=cache_pb2.FeedbackRequest.VERDICT_WRONG_HIT,
                )
            )
        assert error.value.code() == grpc.StatusCode.NOT_FOUND
    assert (await shard.admin.Stats(cache_pb2.StatsRequest())).total.namespaces == before


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (
            complete("t", "hi", cache_control=cache_pb2.CacheControl(ttl_seconds=2**62)),
            "cache_control.ttl_seconds: must be in (0, 315360000]",
        ),
        (
            complete("t", "hi", upstream_request_json="[]"),
            "upstream_request_json: must be a JSON object",
        ),
        (
            complete("t", "hi", upstream_request_json="[" * 50000),
            "upstream_request_json: not valid JSON",
        ),
        (
            complete(
                "t",
                "hi",
                scope=cache_pb2.Scope(params=cache_pb2.GenerationParams(extra={"x": "[" * 70000})),
            ),
            "scope.params: stop and extra are",
        ),
    ],
)
async def test_more_bad_input(shard, request_, message) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await shard.stub.Complete(request_)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in error.value.details()


async def test_huge_store_ttl_is_refused_and_redis_keeps_working(shard, tenant) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await shard.stub.Store(
            cache_pb2.StoreRequest(
                scope=cache_pb2.Scope(tenant=tenant),
                prompt="p",
                ttl_seconds=2**62,
                answer=cache_pb2.Answer(text="a"),
            )
        )
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    await shard.stub.Complete(complete(tenant, "Is Redis still taking writes?"))
    assert shard.shard.store.state == "up" and shard.shard.store.backlog == 0


async def test_guards_veto_near_miss_traps_and_say_which(shard, tenant) -> None:
    await shard.stub.Complete(complete(tenant, "Suggest a 5 mile bike route from Central Park."))
    trap = await shard.stub.Lookup(
        lookup(tenant, "Suggest a 50 mile bike route from Central Park.")
    )
    assert trap.cache.similarity >= trap.cache.threshold  # close enough for a static threshold
    assert trap.cache.status == MISS and trap.cache.guard == "number"
    assert trap.cache.category == "default"
    hit = await shard.stub.Lookup(
        lookup(tenant, "Could you suggest a 5 mile bike route from Central Park?")
    )
    assert hit.cache.status == HIT and hit.cache.guard == ""


async def test_responses_carry_the_scores_the_policy_used(
    embedder_address, redis_server, tenant, tmp_path
) -> None:
    """A calibrated model that hits from similarity 0.9 (p = 0.5 there): a paraphrase's
    response carries its probability and cut, the runner-up's similarity, and a trap's the
    guard that fired."""
    n = len(FEATURES)
    weights = [0.0] * n
    weights[FEATURES.index("similarity")] = 40.0
    model = LogisticModel(
        weights=tuple(weights), bias=-36.0, cut=0.5, mean=(0.0,) * n, scale=(1.0,) * n
    )
    policy = HitPolicy(thresholds={"default": 0.5}, guards={"number": VETO}, model=model)
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(policy.to_json()))
    async with serving(embedder_address, redis_server.url, policy=path) as running:
        for prompt in (
            "Suggest a 5 mile bike route from Central Park.",
            "Where can I rent a bike near Central Park?",
        ):
            await running.stub.Complete(complete(tenant, prompt))
        paraphrase = "Could you suggest a 5 mile bike route from Central Park?"
        hit = (await running.stub.Lookup(lookup(tenant, paraphrase))).cache
        assert hit.status == HIT and hit.kind == cache_pb2.MATCH_KIND_SEMANTIC
        assert hit.HasField("hit_probability") and hit.hit_cut == pytest.approx(0.5)
        assert hit.hit_probability >= hit.hit_cut
        assert hit.HasField("runner_up_similarity")
        assert hit.runner_up_similarity < hit.similarity
        trap = (
            await running.stub.Lookup(
                lookup(tenant, "Suggest a 50 mile bike route from Central Park.")
            )
        ).cache
        assert trap.status == MISS and trap.guard == "number"
        assert "number" in trap.fired_guards and not trap.HasField("hit_probability")
        exact = (
            await running.stub.Lookup(lookup(tenant, "Where can I rent a bike near Central Park?"))
        ).cache
        assert exact.kind == cache_pb2.MATCH_KIND_EXACT and not exact.HasField("hit_probability")
        assert not exact.HasField("runner_up_similarity")


async def test_policy_file_is_loaded(embedder_address, redis_server, tenant, tmp_path) -> None:
    policy = tmp_path / "policy.json"
    # A code threshold no paraphrase reaches (the tuned model puts this one at 0.990 on
    # some builds), a default one every candidate does.
    policy.write_text('{"name": "strict", "thresholds": {"default": 0.5, "code": 0.9999}}')
    async with serving(embedder_address, redis_server.url, policy=policy) as running:
        await running.stub.Complete(complete(tenant, "How do I reverse a list in Python?"))
        code = await running.stub.Lookup(lookup(tenant, "How can I reverse a Python list?"))
        assert code.cache.category == "code" and code.cache.threshold == pytest.approx(0.9999)
        assert code.cache.status == MISS, (code.cache.similarity, code.cache.kind)
        prose = await running.stub.Lookup(lookup(tenant, "Where do penguins live?"))
        assert prose.cache.category == "default" and prose.cache.threshold == pytest.approx(0.5)


async def test_a_burst_of_writes_beyond_the_redis_connections_is_no_outage(shard, tenant) -> None:
    """More concurrent stores than the shard has Redis connections: they wait for one, and
    none is taken for a Redis outage (queued, answered degraded)."""
    scope = cache_pb2.Scope(tenant=tenant, model="m")
    replies = await asyncio.gather(
        *(
            shard.stub.Store(
                cache_pb2.StoreRequest(
                    scope=scope,
                    prompt=f"burst question {i} about {i % 7} things",
                    answer=cache_pb2.Answer(text=f"answer {i}"),
                )
            )
            for i in range(3 * MAX_CONNECTIONS)
        )
    )
    assert len({r.entry_id for r in replies}) == 3 * MAX_CONNECTIONS
    assert shard.shard.store.state == "up" and shard.shard.store.backlog == 0
    async with aioredis.from_url(shard.shard.store.url) as r:
        assert await r.scard(ids_key(replies[0].namespace)) == 3 * MAX_CONNECTIONS


async def hincrby_calls(r: aioredis.Redis) -> int:
    return int((await r.info("commandstats")).get("cmdstat_hincrby", {}).get("calls", 0))


async def test_hits_reach_redis_counted_together(embedder_address, redis_server, tenant) -> None:
    """Hits are counted in memory and written about once a second (one HINCRBY per entry,
    not per hit); a clean stop writes what is left, and an invalidated entry's pending hits
    leave no stray counter behind."""
    prompts = ("How do I export my invoices as CSV?", "Can I pay by bank transfer?")
    async with (
        serving(embedder_address, redis_server.url) as running,
        aioredis.from_url(redis_server.url) as r,
    ):
        kept, dropped = [await running.stub.Complete(complete(tenant, p)) for p in prompts]
        kept_key = entry_key(kept.cache.namespace, kept.cache.entry_id)
        calls = await hincrby_calls(r)
        for _ in range(4):
            for prompt in prompts:
                assert (await running.stub.Lookup(lookup(tenant, prompt))).cache.status == HIT

        async def counted() -> bool:
            return int(await r.hget(kept_key, "hits")) >= 4

        await eventually(counted, within=5)
        assert int(await r.hget(kept_key, "hits")) == 4
        assert await hincrby_calls(r) - calls <= 4  # 8 hits: one or two writes per entry
        await running.stub.Lookup(lookup(tenant, prompts[0]))  # pending at the stop
        await running.stub.Lookup(lookup(tenant, prompts[1]))  # pending, then invalidated
        await running.stub.Invalidate(
            cache_pb2.InvalidateRequest(
                scope=cache_pb2.Scope(tenant=tenant), entry_id=dropped.cache.entry_id
            )
        )
    async with aioredis.from_url(redis_server.url) as r:
        assert int(await r.hget(kept_key, "hits")) == 5
        assert not await r.exists(entry_key(dropped.cache.namespace, dropped.cache.entry_id))


async def test_hits_while_redis_is_away_wait_outside_the_backlog(
    embedder_address, redis_server, tenant
) -> None:
    """Hit counts are hints: during an outage they add up in memory (one per entry) instead
    of filling the bounded backlog that holds the writes that matter, and land afterwards."""
    async with serving(embedder_address, redis_server.url) as running:
        store = running.shard.store
        stored = await running.stub.Complete(complete(tenant, "How long is the warranty?"))
        await store.write_hits()
        redis_server.stop()
        try:
            for _ in range(3):
                hit = await running.stub.Lookup(lookup(tenant, "How long is the warranty?"))
                assert hit.cache.status == HIT
            await running.stub.Complete(complete(tenant, "Do you ship to Chile?"))  # queued
            assert store.state == "down" and store.backlog == 1
            await store.write_hits()
            assert store.backlog == 1  # the hits did not join it
        finally:
            redis_server.start()
        await eventually(lambda: store.state == "up", within=15)
        await store.write_hits()
        key = entry_key(stored.cache.namespace, stored.cache.entry_id)
        async with aioredis.from_url(redis_server.url) as r:
            assert int(await r.hget(key, "hits")) == 3
