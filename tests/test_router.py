"""The router in front of two real shards (in-process), with Redis and the real embedder."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from types import MappingProxyType

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import REGISTRY

from cache_svc.llm import EchoBackend, LLMBackend, LLMRequest, UpstreamError
from cache_svc.service import running_shard
from router_svc.service import running_router
from semcache.metadata import UPSTREAM_ERROR
from semcache.runtime.validation import RequestLimits
from semcache.v1 import cache_pb2, cache_pb2_grpc, link_pb2, link_pb2_grpc
from tests.conftest import eventually, router_config, shard_config, whole_ring

HIT, MISS = cache_pb2.CACHE_STATUS_HIT, cache_pb2.CACHE_STATUS_MISS


@contextlib.asynccontextmanager
async def mesh(
    embedder_address: str,
    redis_url: str,
    shards: int = 2,
    llm: Callable[[], LLMBackend] = EchoBackend,
    shard_settings: Mapping[str, object] = MappingProxyType({}),
    **router_settings: object,
) -> AsyncIterator[dict]:
    async with contextlib.AsyncExitStack() as stack:
        servers = []
        for i in range(shards):
            server, _shard = await stack.enter_async_context(
                running_shard(
                    shard_config(
                        embedder=embedder_address,
                        redis=redis_url,
                        shard_id=f"shard-{i}",
                        **shard_settings,
                    ),
                    llm=llm(),
                )
            )
            servers.append(server)
        config = router_config(
            shards=",".join(s.address for s in servers), unhealthy_after=2, **router_settings
        )
        router, pool = await stack.enter_async_context(running_router(config))
        await whole_ring(pool)
        channel = await stack.enter_async_context(grpc.aio.insecure_channel(router.address))
        yield {
            "cache": cache_pb2_grpc.SemanticCacheStub(channel),
            "admin": cache_pb2_grpc.AdminStub(channel),
            "shards": servers,
            "pool": pool,
            "address": router.address,
        }


def complete(tenant: str, prompt: str, system: str = "") -> cache_pb2.CompleteRequest:
    return cache_pb2.CompleteRequest(
        scope=cache_pb2.Scope(tenant=tenant, system_prompt=system), prompt=prompt
    )


async def test_same_scope_same_shard_and_paraphrase_hits(
    embedder_address, redis_server, tenant
) -> None:
    async with mesh(embedder_address, redis_server.url) as m:
        first = await m["cache"].Complete(complete(tenant, "How do I renew my passport?"))
        hit = await m["cache"].Complete(complete(tenant, "How can I renew my passport?"))
        assert first.cache.status == MISS and hit.cache.status == HIT
        assert hit.cache.shard == first.cache.shard
        assert hit.cache.timings.route_ms > 0
        other = await m["cache"].Complete(
            complete(tenant, "How do I renew my passport?", system="You are a pirate.")
        )
        assert other.cache.status == MISS
        ring = await m["admin"].Ring(cache_pb2.RingRequest(scope=cache_pb2.Scope(tenant=tenant)))
        assert ring.namespace == first.cache.namespace
        assert len(ring.owners) == 2 and sum(mem.share for mem in ring.members) == pytest.approx(
            1.0
        )
        stats = await m["admin"].Stats(cache_pb2.StatsRequest())
        assert len(stats.shards) == 2 and stats.total.hits >= 1 and stats.total.misses >= 2


async def tenants_over_both_shards(admin, base: str, count: int) -> list[str]:
    """`count` tenants, half owned by each shard: random tenants all land on one 1 time in 128."""
    by_owner: dict[str, list[str]] = {}
    for i in range(1000):
        name = f"{base}-{i}"
        ring = await admin.Ring(cache_pb2.RingRequest(scope=cache_pb2.Scope(tenant=name)))
        by_owner.setdefault(ring.owners[0], []).append(name)
        if len(by_owner) == 2 and all(len(names) >= count // 2 for names in by_owner.values()):
            break
    first, second = by_owner.values()
    return first[: count // 2] + second[: count - count // 2]


async def test_losing_a_shard_fails_no_request(embedder_address, redis_server, tenant) -> None:
    async with mesh(embedder_address, redis_server.url) as m:
        prompts = [
            f"{topic}?"
            for topic in (
                "Where is the Eiffel tower",
                "Who wrote Hamlet",
                "What is photosynthesis",
                "How far is the moon",
                "Why do cats purr",
                "What is a mortgage",
                "How do vaccines work",
                "What is Kubernetes",
            )
        ]
        tenants = await tenants_over_both_shards(m["admin"], tenant, len(prompts))
        first = [
            await m["cache"].Complete(complete(t, p)) for t, p in zip(tenants, prompts, strict=True)
        ]
        assert {r.cache.shard for r in first} == {"shard-0", "shard-1"}
        victim = m["shards"][0]
        await victim.stop()  # the shard goes away; its namespaces move to the other
        again = [
            await m["cache"].Complete(complete(t, p)) for t, p in zip(tenants, prompts, strict=True)
        ]
        assert all(r.cache.status == HIT for r in again)  # hydrated from Redis
        assert {r.cache.shard for r in again} == {"shard-1"}
        for before, after in zip(first, again, strict=True):
            assert after.cache.entry_id == before.cache.entry_id
        # Health checks (every 0.1 s, 2 failures) take it out even if no call found it down.
        await eventually(lambda: not m["pool"].members[victim.address].healthy, within=5)
        ring = await m["admin"].Ring(cache_pb2.RingRequest())
        assert sorted(mem.healthy for mem in ring.members) == [False, True]


def answered(method: str, code: str) -> float:
    """Calls the router counted as answered with `code` (the metric every router exports)."""
    return (
        REGISTRY.get_sample_value("semcache_requests_total", {"method": method, "code": code})
        or 0.0
    )


async def test_bad_input_is_refused_at_the_router(embedder_address, redis_server) -> None:
    async with mesh(embedder_address, redis_server.url) as m:
        refused, ok = answered("Lookup", "INVALID_ARGUMENT"), answered("Lookup", "OK")
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await m["cache"].Lookup(cache_pb2.LookupRequest(prompt="hi", min_similarity=2))
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await m["cache"].Feedback(cache_pb2.FeedbackRequest(entry_id="x"))
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        await m["cache"].Lookup(cache_pb2.LookupRequest(prompt="hi"))
        # What callers saw, by method and status code.
        assert answered("Lookup", "INVALID_ARGUMENT") == refused + 1
        assert answered("Lookup", "OK") == ok + 1
        assert answered("Feedback", "INVALID_ARGUMENT") >= 1


async def test_unknown_enum_values_are_refused_by_name(embedder_address, redis_server) -> None:
    """A target or verdict number the contract does not define (a newer client, a made-up
    request) is refused naming the field and the value, not read as another target."""
    entry_id = "0" * 32 + "." + "0" * 16
    async with mesh(embedder_address, redis_server.url) as m:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await m["cache"].Invalidate(cache_pb2.InvalidateRequest(target=7, entry_id=entry_id))
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "target: unknown value 7" in (error.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await m["cache"].Feedback(cache_pb2.FeedbackRequest(entry_id=entry_id, verdict=9))
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "verdict:" in (error.value.details() or "")
        assert "got 9" in (error.value.details() or "")


async def test_a_longer_prompt_limit_holds_through_the_router(
    embedder_address, redis_server
) -> None:
    """`max_prompt_bytes` raised on router and shards together: a prompt over the default
    limit (and over what an embedder takes) is stored and found, exactly and semantically;
    one over the new limit is refused by the router, naming it."""
    limit = 2 * RequestLimits().max_prompt_bytes
    prompt = "Summarise this log for me: " + "disk full on node 7. " * 2000
    assert RequestLimits().max_prompt_bytes < len(prompt.encode()) <= limit
    scope = cache_pb2.Scope(tenant=f"long-{uuid.uuid4().hex[:8]}")
    settings = {"max_prompt_bytes": limit}
    async with mesh(embedder_address, redis_server.url, shard_settings=settings, **settings) as m:
        stored = await m["cache"].Store(
            cache_pb2.StoreRequest(scope=scope, prompt=prompt, answer=cache_pb2.Answer(text="ok"))
        )
        found = await m["cache"].Lookup(cache_pb2.LookupRequest(scope=scope, prompt=prompt))
        assert found.cache.status == cache_pb2.CACHE_STATUS_HIT
        assert found.cache.entry_id == stored.entry_id
        # Its vector too (of what the model reads: the head), though longer than an
        # embedder takes: the same prompt spelled differently is a semantic hit.
        spelled = prompt.replace("Summarise", "Summarize")
        near = await m["cache"].Lookup(cache_pb2.LookupRequest(scope=scope, prompt=spelled))
        assert near.cache.status == cache_pb2.CACHE_STATUS_HIT, near.cache
        assert near.cache.kind == cache_pb2.MATCH_KIND_SEMANTIC
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await m["cache"].Lookup(cache_pb2.LookupRequest(scope=scope, prompt="x" * (limit + 1)))
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert f"limit {limit}" in (error.value.details() or "")


class DownUpstream(EchoBackend):
    """An LLM that answers 503: the shard says UNAVAILABLE, marked as the upstream's."""

    async def stream(self, request: LLMRequest):
        self.calls += 1
        raise UpstreamError(503, "overloaded")
        yield  # an async generator, like every backend


async def test_upstream_unavailable_is_passed_on_not_failed_over(
    embedder_address, redis_server, tenant
) -> None:
    backends: list[DownUpstream] = []

    def llm() -> DownUpstream:
        backends.append(DownUpstream())
        return backends[-1]

    async with mesh(embedder_address, redis_server.url, llm=llm) as m:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await m["cache"].Complete(complete(tenant, "Is the upstream up?"))
        assert error.value.code() == grpc.StatusCode.UNAVAILABLE
        assert UPSTREAM_ERROR in tuple(error.value.trailing_metadata())
        assert sum(b.calls for b in backends) == 1  # no second shard asked the LLM again
        assert all(mem.healthy for mem in m["pool"].members.values())


async def test_overload_is_refused_at_once_and_health_still_answers(
    embedder_address, redis_server, tenant
) -> None:
    async with mesh(
        embedder_address, redis_server.url, llm=lambda: EchoBackend(delay=2.0), max_in_flight=4
    ) as m:
        loop = asyncio.get_running_loop()
        started = loop.time()

        async def call(i: int) -> tuple[str, float]:
            try:
                await m["cache"].Complete(complete(tenant, f"distinct question number {i}"))
                outcome = "OK"
            except grpc.aio.AioRpcError as e:
                outcome = e.code().name
                if e.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                    outcome += f": {e.details()}"  # what a failure says, in its report
            return outcome, loop.time() - started

        calls = [asyncio.create_task(call(i)) for i in range(12)]
        await eventually(lambda: any(c.done() for c in calls))
        # Every refusal came back while the admitted calls were still waiting on the LLM.
        done = [c.result() for c in calls if c.done()]
        assert done and {outcome for outcome, _ in done} == {"RESOURCE_EXHAUSTED"}
        async with grpc.aio.insecure_channel(m["address"]) as channel:
            health = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=1
            )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.aio.AioRpcError) as refused:  # streams are counted too
            async for _ in m["cache"].StreamComplete(complete(tenant, "yet another question")):
                pass
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "over capacity" in (refused.value.details() or "")
        results = [await c for c in calls]
    outcomes = [outcome for outcome, _ in results]
    assert outcomes.count("OK") == 4 and outcomes.count("RESOURCE_EXHAUSTED") == 8


async def test_every_entry_stored_under_concurrency_is_found_again(
    embedder_address, redis_server, tenant
) -> None:
    """One busy namespace, many concurrent writes: every read finds every write (calls for a
    namespace all reach its owner; see the bounded-load note in docs/router.md)."""
    prompts = [
        f"Stored question number {i} about {topic}"
        for i in range(12)
        for topic in ("tea", "trains", "taxes")
    ]
    async with mesh(embedder_address, redis_server.url, shards=3) as m:
        scope = cache_pb2.Scope(tenant=tenant)
        stored = await asyncio.gather(
            *(
                m["cache"].Store(
                    cache_pb2.StoreRequest(
                        scope=scope, prompt=p, answer=cache_pb2.Answer(text=f"answer to {p}")
                    )
                )
                for p in prompts
            )
        )
        lookups = [cache_pb2.LookupRequest(scope=scope, prompt=p) for p in prompts]
        found = await asyncio.gather(*(m["cache"].Lookup(r) for r in lookups))
    assert [f.cache.entry_id for f in found] == [s.entry_id for s in stored]
    assert len({f.cache.shard for f in found}) == 1


async def test_a_caller_who_goes_away_frees_the_shard_at_once(
    embedder_address, redis_server, tenant
) -> None:
    """Calls reach shards as messages on one link stream: a caller's cancel reaches the shard
    too (its slot is free long before the 30 s LLM would have answered)."""
    async with mesh(
        embedder_address, redis_server.url, shards=1, llm=lambda: EchoBackend(delay=30)
    ) as m:
        shard = m["shards"][0]
        call = m["cache"].Complete(complete(tenant, "A question for a very slow LLM"), timeout=60)
        await eventually(lambda: shard.admission.in_flight == 1)
        call.cancel()
        await eventually(lambda: shard.admission.in_flight == 0, within=5)
        with pytest.raises(grpc.aio.AioRpcError) as late:
            await m["cache"].Complete(complete(tenant, "Another one"), timeout=0.5)
        assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        await eventually(lambda: shard.admission.in_flight == 0, within=5)


async def test_the_shard_link_answers_each_message_as_its_call_would(
    embedder_address, redis_server, tenant
) -> None:
    async with (
        running_shard(
            shard_config(embedder=embedder_address, redis=redis_server.url), llm=EchoBackend()
        ) as (server, _shard),
        grpc.aio.insecure_channel(server.address) as channel,
    ):
        call = link_pb2_grpc.ShardLinkStub(channel).Forward()
        lookup = cache_pb2.LookupRequest(scope=cache_pb2.Scope(tenant=tenant), prompt="hi there")
        await call.write(link_pb2.ForwardRequest(id=7))
        await call.write(link_pb2.ForwardRequest(id=8, lookup=cache_pb2.LookupRequest()))
        await call.write(link_pb2.ForwardRequest(id=9, timeout_seconds=5, lookup=lookup))
        await call.done_writing()
        replies = {reply.id: reply async for reply in call}
    assert replies[7].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert replies[7].error.message == "call: one of lookup, store or complete is required"
    assert replies[8].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert replies[8].error.message.startswith("prompt")
    assert replies[9].lookup.cache.status == MISS


async def test_a_stopping_shard_answers_what_it_took_and_ends_its_link(
    embedder_address, redis_server, tenant
) -> None:
    """The router's link stream would keep a stopping shard waiting its whole grace period;
    the shard ends it instead, once the messages it took are answered."""
    config = shard_config(embedder=embedder_address, redis=redis_server.url, grace_seconds=60)
    async with contextlib.AsyncExitStack() as stack:
        server, _ = await stack.enter_async_context(
            running_shard(config, llm=EchoBackend(delay=1.0))
        )
        router, _ = await stack.enter_async_context(
            running_router(router_config(shards=server.address))
        )
        channel = await stack.enter_async_context(grpc.aio.insecure_channel(router.address))
        cache = cache_pb2_grpc.SemanticCacheStub(channel)
        slow = asyncio.ensure_future(cache.Complete(complete(tenant, "Asked just before the stop")))
        await eventually(lambda: server.admission.in_flight == 1)
        async with asyncio.timeout(20):  # far below the 60 s grace
            await server.stop()
        reply = await slow
        assert reply.cache.status == MISS and reply.answer.text.endswith("before the stop")
