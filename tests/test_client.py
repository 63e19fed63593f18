"""The client SDK against a real in-process mesh (router, two shards, Redis, the real model),
and against small fake servers for the retry rules."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest
import pytest_asyncio

from cache_svc.llm import EchoBackend
from cache_svc.service import running_shard
from router_svc.service import running_router
from semcache.client import (
    AsyncClient,
    CacheInfo,
    Client,
    Completion,
    InvalidRequestError,
    RetryPolicy,
    Ring,
    SemcacheError,
    ShardStats,
    Stats,
    Stored,
    Timings,
    UnavailableError,
    UpstreamError,
    Usage,
)
from semcache.dev.probe import free_port
from semcache.metadata import UpstreamFailure
from semcache.runtime.config import RouterConfig, ServerConfig
from semcache.runtime.server import GrpcServer, Service
from semcache.v1 import cache_pb2, cache_pb2_grpc
from tests.conftest import shard_config, whole_ring


@dataclass(frozen=True)
class Mesh:
    router: str
    shards: tuple[str, ...]


def router_config(shards: tuple[str, ...], port: int = 0) -> RouterConfig:
    return RouterConfig(
        port=port,
        metrics_port=-1,
        grace_seconds=0,
        shards=",".join(shards),
        health_interval_seconds=0.1,
        unhealthy_after=2,
    )


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def mesh(embedder_address: str, redis_server) -> AsyncIterator[Mesh]:
    """One router over two shards for the module; each test keeps to its own tenant."""
    async with contextlib.AsyncExitStack() as stack:
        shards = []
        for i in range(2):
            server, _ = await stack.enter_async_context(
                running_shard(
                    shard_config(
                        embedder=embedder_address, redis=redis_server.url, shard_id=f"shard-{i}"
                    ),
                    llm=EchoBackend(),
                )
            )
            shards.append(server.address)
        router, pool = await stack.enter_async_context(running_router(router_config(tuple(shards))))
        await whole_ring(pool)
        yield Mesh(router.address, tuple(shards))


async def test_complete_miss_then_paraphrase_hit(mesh: Mesh, tenant: str) -> None:
    async with AsyncClient(mesh.router, tenant=tenant) as cache:
        first = await cache.complete("How do I renew my passport?")
        again = await cache.complete("How can I renew my passport?")
    assert isinstance(first, Completion) and isinstance(first.cache, CacheInfo)
    assert not first.hit and first.cache.status == "miss" and first.cache.stored
    assert first.text is not None and first.text.endswith("How do I renew my passport?")
    assert first.finish_reason == "stop" and first.usage.total_tokens > 0
    assert again.hit and again.cache.status == "hit" and again.cache.kind == "semantic"
    assert again.text == first.text and again.usage == first.usage
    assert 0 < again.cache.threshold <= again.cache.similarity < 1
    assert again.cache.entry_id == first.cache.entry_id != ""
    assert again.cache.shard == first.cache.shard and again.cache.shard.startswith("shard-")
    assert again.cache.matched_prompt == "How do I renew my passport?"
    assert isinstance(again.cache.timings, Timings) and again.cache.timings.route_ms > 0
    assert again.cache.degraded == ()


async def test_lookup_store_and_scope(mesh: Mesh, tenant: str) -> None:
    scope = {
        "model": "m1",
        "system": "Be brief.",
        "history": [("user", "hi"), {"role": "assistant", "content": "hello"}],
        "params": {
            "temperature": 0.2,
            "stop": "\n",
            "extra": {"response_format": {"type": "text"}},
        },
    }
    prompt = "What is the capital of Australia?"
    async with AsyncClient(mesh.router, tenant=tenant) as cache:
        missed = await cache.lookup(prompt, **scope)
        stored = await cache.store(prompt, "Canberra.", metadata={"id": "r1"}, **scope)
        found = await cache.lookup(prompt, **scope)
        other_model = await cache.lookup(prompt, **(scope | {"model": "m2"}))
        other_params = await cache.lookup(prompt, **(scope | {"params": {"temperature": 0.3}}))
        other_tenant = await cache.lookup(prompt, **(scope | {"tenant": f"{tenant}-x"}))
    assert missed.text is None and not missed.hit and missed.cache.status == "miss"
    assert isinstance(stored, Stored) and stored.entry_id and not stored.replaced
    assert stored.namespace == missed.cache.namespace and stored.shard.startswith("shard-")
    assert found.hit and found.cache.kind == "exact" and found.text == "Canberra."
    assert found.cache.entry_id == stored.entry_id and found.metadata == {"id": "r1"}
    assert other_model.text is None and other_params.text is None and other_tenant.text is None
    assert len({r.cache.namespace for r in (found, other_model, other_params, other_tenant)}) == 4


async def test_stream_complete(mesh: Mesh, tenant: str) -> None:
    prompt = "Why is the sky blue?"
    async with AsyncClient(mesh.router, tenant=tenant) as cache:
        stream = await cache.stream_complete(prompt)
        assert stream.cache.status == "miss" and not stream.done
        deltas = [delta async for delta in stream]
        replay = await cache.stream_complete("Why is the sky blue")
        replayed = [delta async for delta in replay]
        cached = await cache.complete(prompt)
    assert len(deltas) > 1 and "".join(deltas) == stream.text and stream.text.endswith(prompt)
    assert stream.done and stream.finish_reason == "stop"
    assert isinstance(stream.usage, Usage) and stream.usage.total_tokens > 0
    assert stream.cache.stored and stream.cache.entry_id  # the end chunk's CacheInfo
    assert replay.hit and replay.cache.kind == "exact" and "".join(replayed) == stream.text
    assert cached.hit and cached.text == stream.text
    assert cached.cache.entry_id == stream.cache.entry_id


async def test_invalidate(mesh: Mesh, tenant: str) -> None:
    async with AsyncClient(mesh.router, tenant=tenant) as cache:
        done = await cache.complete("How tall is Mount Everest?")
        assert await cache.invalidate(entry_id=done.cache.entry_id) == 1
        assert (await cache.lookup("How tall is Mount Everest?")).text is None
        for prompt in ("Who painted the Mona Lisa?", "What is the speed of light?"):
            await cache.store(prompt, "an answer", model="m")
        await cache.store("What is a black hole?", "an answer")
        assert await cache.invalidate(namespace=True, model="m") == 2
        assert (await cache.lookup("What is a black hole?")).hit
        assert await cache.invalidate(tenant_wide=True) == 1
        assert (await cache.lookup("What is a black hole?")).text is None
        for wrong in ({}, {"entry_id": "x", "namespace": True}):
            with pytest.raises(ValueError, match="exactly one"):
                await cache.invalidate(**wrong)


async def test_feedback_wrong_hit_removes_the_entry(mesh: Mesh, tenant: str) -> None:
    async with AsyncClient(mesh.router, tenant=tenant) as cache:
        await cache.complete("How do I bake sourdough bread?")
        hit = await cache.complete("How can I bake sourdough bread?")
        assert hit.hit
        removed = await cache.feedback(
            hit.cache.entry_id, wrong=True, prompt="How can I bake sourdough bread?"
        )
        assert removed is True
        assert (await cache.lookup("How do I bake sourdough bread?")).text is None


async def test_stats_and_ring(mesh: Mesh, tenant: str) -> None:
    async with AsyncClient(mesh.router, tenant=tenant) as cache:
        done = await cache.complete("What is the boiling point of water?")
        stats = await cache.stats()
        ring = await cache.ring()
        mine = await cache.ring(model="")
    assert isinstance(stats, Stats) and isinstance(stats.total, ShardStats)
    assert len(stats.shards) == 2 and all(s.reachable for s in stats.shards)
    assert stats.total.shard == "total" and stats.total.entries >= 1
    assert stats.total.misses >= 1 and stats.total.misses == sum(s.misses for s in stats.shards)
    assert isinstance(ring, Ring) and len(ring.members) == 2 and ring.vnodes > 0
    assert sum(m.share for m in ring.members) == pytest.approx(1.0)
    assert all(m.healthy for m in ring.members)
    assert ring.namespace == "" and ring.owners == ()
    assert mine.namespace == done.cache.namespace
    assert sorted(mine.owners) == sorted(m.id for m in ring.members)


async def test_errors_are_semcache_errors(mesh: Mesh, tenant: str) -> None:
    async with AsyncClient(mesh.router, tenant=tenant) as cache:
        with pytest.raises(SemcacheError) as error:
            await cache.lookup("hi", min_similarity=2)
        assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert isinstance(error.value, InvalidRequestError)
        assert error.value.attempts == 1 and "min_similarity" in error.value.details
        assert str(error.value).startswith("INVALID_ARGUMENT: ")
        with pytest.raises(SemcacheError) as error:
            await cache.feedback("not-an-entry-id", wrong=True)
        assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(ValueError, match="temprature"):
            await cache.lookup("hi", params={"temprature": 0.5})


async def test_nothing_listening_fails_clearly_within_the_timeout() -> None:
    address = f"127.0.0.1:{free_port()}"
    async with AsyncClient(address, timeout=5, retries=3, backoff=0.01) as cache:
        with pytest.raises(SemcacheError) as error:
            await cache.complete("hello?")
        assert error.value.code == grpc.StatusCode.UNAVAILABLE and error.value.attempts == 4
        assert isinstance(error.value, UnavailableError)
        assert str(error.value).startswith(f"nothing answers at {address} (UNAVAILABLE: ")
        with pytest.raises(SemcacheError) as error:
            await cache.stream_complete("hello?")
        assert error.value.attempts == 4 and "nothing answers" in str(error.value)
    # Many retries, short deadline: the deadline wins, and nothing sleeps past it.
    async with AsyncClient(address, timeout=0.5, retries=1000, backoff=0.05) as cache:
        started = time.monotonic()
        with pytest.raises(SemcacheError) as error:
            await cache.stats()
        assert time.monotonic() - started < 0.5 + 0.25
        assert error.value.code == grpc.StatusCode.UNAVAILABLE
        assert 1 < error.value.attempts < 1001


@pytest.mark.parametrize("streamed", [False, True])
async def test_retries_reach_a_router_that_starts_late(
    mesh: Mesh, tenant: str, streamed: bool
) -> None:
    port = free_port()
    stop = asyncio.Event()

    async def start_late() -> None:
        await asyncio.sleep(0.3)  # within the client's retry budget (10 s, 10 retries)
        async with running_router(router_config(mesh.shards, port)):
            await stop.wait()

    task = asyncio.create_task(start_late())
    try:
        async with AsyncClient(f"127.0.0.1:{port}", tenant=tenant, timeout=10, retries=10) as cache:
            if streamed:
                stream = await cache.stream_complete("What is a prime number?")
                text = "".join([delta async for delta in stream])
            else:
                text = (await cache.complete("What is a prime number?")).text
    finally:
        stop.set()
        await task
    assert text is not None and text.endswith("What is a prime number?")


class FakeCache(cache_pb2_grpc.SemanticCacheServicer):
    """Fails in chosen ways and counts calls: for the retry rules the real mesh cannot
    produce on demand."""

    def __init__(
        self,
        upstream: bool = False,
        after_start: bool = False,
        code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE,
    ) -> None:
        self.upstream = upstream
        self.after_start = after_start
        self.code = code
        self.calls = 0
        self.metadata: list[tuple[str, str]] = []

    async def _fail(self, context: grpc.aio.ServicerContext) -> None:
        if self.upstream:
            context.set_trailing_metadata(UpstreamFailure(503).metadata())
        await context.abort(self.code, "the LLM is down")

    async def Complete(  # noqa: N802 - the proto's method name
        self,
        request: cache_pb2.CompleteRequest,
        context: grpc.aio.ServicerContext,
    ) -> cache_pb2.CompleteResponse:
        self.calls += 1
        self.metadata = [(m.key, m.value) for m in context.invocation_metadata() or ()]
        await self._fail(context)
        raise AssertionError("unreachable")

    async def StreamComplete(  # noqa: N802
        self,
        request: cache_pb2.CompleteRequest,
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[cache_pb2.CompleteChunk]:
        self.calls += 1
        if self.after_start:
            yield cache_pb2.CompleteChunk(
                start=cache_pb2.CacheInfo(status=cache_pb2.CACHE_STATUS_MISS)
            )
            yield cache_pb2.CompleteChunk(delta="Hel")
        await self._fail(context)


@contextlib.asynccontextmanager
async def fake_server(servicer: FakeCache) -> AsyncIterator[str]:
    service = Service(
        cache_pb2.DESCRIPTOR.services_by_name["SemanticCache"],
        cache_pb2_grpc.add_SemanticCacheServicer_to_server,
        servicer,
    )
    config = ServerConfig(port=0, metrics_port=-1, grace_seconds=0)
    async with GrpcServer(config, [service]) as server:
        yield server.address


async def test_upstream_unavailable_is_not_retried_but_a_shard_outage_is() -> None:
    upstream, outage = FakeCache(upstream=True), FakeCache()
    async with fake_server(upstream) as a, fake_server(outage) as b:
        async with AsyncClient(a, token="s3cret", retries=3, backoff=0.01) as cache:
            with pytest.raises(SemcacheError) as error:
                await cache.complete("hi")
            assert error.value.upstream and error.value.attempts == 1 and upstream.calls == 1
            assert type(error.value) is UpstreamError and error.value.upstream_status == 503
            assert str(error.value) == "UNAVAILABLE: the LLM is down"
            assert ("authorization", "Bearer s3cret") in upstream.metadata
            with pytest.raises(SemcacheError):
                await cache.stream_complete("hi")
            assert upstream.calls == 2
        async with AsyncClient(b, retries=3, backoff=0.01) as cache:
            with pytest.raises(SemcacheError) as error:
                await cache.complete("hi")
            assert outage.calls == 4 and error.value.attempts == 4 and not error.value.upstream
            assert type(error.value) is UnavailableError
            # the server answered: this is not "nothing answers"
            assert str(error.value) == "UNAVAILABLE: the LLM is down (after 4 attempts)"
            with pytest.raises(SemcacheError):
                await cache.stream_complete("hi")
            assert outage.calls == 8


@pytest.mark.parametrize(
    ("code", "attempts"),
    [(grpc.StatusCode.CANCELLED, 3), (grpc.StatusCode.INTERNAL, 1)],
)
async def test_a_call_the_server_cancelled_is_retried(code, attempts) -> None:
    """A router stopping under a call ends it CANCELLED (the SDK's own cancellations raise
    asyncio.CancelledError instead): tried again like UNAVAILABLE; other failures are not."""
    servicer = FakeCache(code=code)
    async with (
        fake_server(servicer) as address,
        AsyncClient(address, retries=2, backoff=0.01) as cache,
    ):
        with pytest.raises(SemcacheError) as error:
            await cache.complete("hi")
    assert error.value.code == code and error.value.attempts == attempts
    assert servicer.calls == attempts


async def test_a_stream_is_not_retried_after_its_first_message() -> None:
    servicer = FakeCache(after_start=True)
    async with fake_server(servicer) as address, AsyncClient(address, backoff=0.01) as cache:
        stream = await cache.stream_complete("hi")
        assert stream.cache.status == "miss"
        assert await anext(stream) == "Hel"
        with pytest.raises(SemcacheError) as error:
            await anext(stream)
        assert error.value.code == grpc.StatusCode.UNAVAILABLE and servicer.calls == 1
        assert stream.text == "Hel" and not stream.done


def use_blocking_client(address: str, tenant: str) -> dict:
    """Runs in a worker thread: the servers share the test's event loop."""
    with Client(address, tenant=tenant) as cache:
        first = cache.complete("How do I descale a kettle?")
        with cache.stream_complete("How can I descale a kettle?") as stream:
            start = stream.cache
            deltas = list(stream)
        try:
            cache.lookup("hi", min_similarity=2)
            error = None
        except SemcacheError as e:
            error = e
    try:
        cache.stats()
        closed = None
    except RuntimeError as e:
        closed = e
    return {
        "first": first,
        "stream": stream,
        "start": start,
        "deltas": deltas,
        "error": error,
        "closed": closed,
    }


async def test_blocking_client(mesh: Mesh, tenant: str) -> None:
    got = await asyncio.to_thread(use_blocking_client, mesh.router, tenant)
    first, stream = got["first"], got["stream"]
    assert isinstance(first, Completion) and not first.hit and first.text
    assert got["start"].status == "hit" and got["start"].entry_id == first.cache.entry_id
    assert len(got["deltas"]) > 1 and "".join(got["deltas"]) == first.text == stream.text
    assert stream.done and stream.finish_reason == "stop" and stream.usage == first.usage
    assert got["error"].code == grpc.StatusCode.INVALID_ARGUMENT
    assert "closed" in str(got["closed"])


def use_blocking_bulk(address: str, tenant: str) -> dict:
    """Runs in a worker thread: import and export through the blocking client."""
    entries: list[dict] = [
        {"prompt": f"What is the boiling point of liquid number {i}?", "answer": f"{i} C"}
        for i in range(5)
    ]
    entries.append({"answer": "an entry without a prompt"})
    with Client(address, tenant=tenant) as cache:
        imported = sorted(cache.import_entries(entries, window=2), key=lambda r: r.index)
        exported = list(cache.export())
        partial = cache.export()
        first = next(partial)
        partial.close()  # leaving early ends the call; the client goes on
        stats = cache.stats()
    return {"imported": imported, "exported": exported, "first": first, "stats": stats}


async def test_blocking_client_imports_and_exports(mesh: Mesh, tenant: str) -> None:
    got = await asyncio.to_thread(use_blocking_bulk, mesh.router, tenant)
    imported = got["imported"]
    assert [r.index for r in imported] == list(range(6))
    assert all(r.error is None and r.stored is not None for r in imported[:5])
    assert imported[5].error is not None
    assert imported[5].error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert sorted(e["answer"]["text"] for e in got["exported"]) == [f"{i} C" for i in range(5)]
    assert got["first"] in got["exported"]
    assert got["stats"].total.entries >= 5


class CallerInterruptedError(Exception):
    """What a Ctrl-C is to the blocking client: an exception raised in the caller's thread
    while it waits on the client's loop."""


def test_an_iterator_interrupted_mid_step_ends_cleanly() -> None:
    """The step under way is cancelled and finishes its clean-up before the iterator
    closes: the caller sees its interruption, not "generator already running"."""
    cleaned = []

    async def answers() -> AsyncIterator[int]:  # shaped like import_entries
        waiter = asyncio.create_task(asyncio.sleep(100))
        try:
            yield 1
            await asyncio.sleep(100)  # waiting for the next answer
            yield 2
        finally:
            waiter.cancel()
            await asyncio.gather(waiter, return_exceptions=True)
            cleaned.append(True)

    def interrupt(*_: object) -> None:
        raise CallerInterruptedError

    previous = signal.signal(signal.SIGALRM, interrupt)
    with Client("127.0.0.1:1") as cache:  # never dialled: the iterator is the client's
        items = cache._iterate(answers())
        assert next(items) == 1
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        try:
            with pytest.raises(CallerInterruptedError):
                next(items)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
    assert cleaned == [True]


async def test_an_iterator_left_open_does_not_hold_the_process(mesh: Mesh, tenant: str) -> None:
    """A script that ends with an export half read and the client not closed exits."""
    async with AsyncClient(mesh.router, tenant=tenant) as cache:
        await cache.store("What is the boiling point of water?", "100 C")
    script = (
        "from semcache.client import Client\n"
        f"cache = Client({mesh.router!r}, tenant={tenant!r})\n"
        "entries = cache.export()\n"
        "print(next(entries)['answer']['text'])\n"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, stdout=asyncio.subprocess.PIPE
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0 and out.decode().strip() == "100 C"


def test_cache_info_reads_absent_scores_as_none() -> None:
    scored = CacheInfo.from_proto(
        cache_pb2.CacheInfo(
            similarity=0.93,
            runner_up_similarity=0.0,
            fired_guards=["swap"],
            hit_probability=0.97,
            hit_cut=0.81,
        )
    )
    assert scored.runner_up_similarity == 0.0 and scored.fired_guards == ("swap",)
    assert (scored.hit_probability, scored.hit_cut) == (0.97, 0.81)
    bare = CacheInfo.from_proto(cache_pb2.CacheInfo(similarity=0.5))
    assert (bare.runner_up_similarity, bare.hit_probability, bare.hit_cut) == (None, None, None)


async def test_one_retry_policy_object_serves_unary_calls_and_streams() -> None:
    outage = FakeCache()
    policy = RetryPolicy(retries=1, backoff=0.01)
    async with fake_server(outage) as address, AsyncClient(address, retry=policy) as cache:
        assert cache.retry is policy
        with pytest.raises(UnavailableError) as error:
            await cache.complete("hi")
        assert error.value.attempts == 2
        with pytest.raises(UnavailableError):
            await cache.stream_complete("hi")
    assert outage.calls == 4
    with pytest.raises(TypeError, match="retries"):
        AsyncClient(address, retry=policy, retries=2)
    with pytest.raises(TypeError, match="retires"):
        AsyncClient(address, retires=2)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="retries"):
        RetryPolicy(retries=-1)
    with pytest.raises(TypeError, match="channel"):  # a grpc.aio channel belongs to one loop
        Client(address, channel=None)  # type: ignore[call-arg]
