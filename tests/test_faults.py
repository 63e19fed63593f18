"""Faults under load, through the router: Redis stopped, the embedder killed, the router
restarted. Each load is bounded (a fixed number of calls, a few seconds) and on loopback.
(A shard killed with `kill -9` under load: tests/test_mesh.py; overload: tests/test_router.py.)
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import redis.asyncio as aioredis

from cache_svc.store import entry_key
from router_svc.service import running_router
from semcache.client import AsyncClient
from semcache.dev.localredis import LocalRedis
from semcache.dev.probe import free_port, wait_until_serving
from semcache.v1 import cache_pb2
from semcache.v1.cache_pb2_grpc import SemanticCacheStub
from tests import test_shard_service as single
from tests.conftest import eventually, router_config
from tests.test_router import complete, mesh

TOPICS = [
    "shipping to Iceland",
    "renewing a passport",
    "the boiling point of water",
    "resetting a router",
    "Finnish greetings",
    "vegan lasagna",
    "HTTP status 418",
    "the speed of light",
    "tax deadlines",
    "cat nutrition",
]


def prompts(tenant: str) -> itertools.count:
    """Distinct questions (so each is a miss that stores an entry)."""
    return (
        f"{tenant} question {i}: what should I know about {TOPICS[i % len(TOPICS)]}?"
        for i in itertools.count()
    )  # type: ignore[return-value]


class Load:
    """`workers` callers issuing Complete with fresh prompts until stopped; every outcome
    is kept (a response, or the gRPC code of a failure)."""

    def __init__(self, cache: SemanticCacheStub, tenant: str, workers: int = 4) -> None:
        self.cache = cache
        self.tenant = tenant
        self.workers = workers
        self.responses: list[cache_pb2.CompleteResponse] = []
        self.failures: list[str] = []
        self._prompts = prompts(tenant)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def _caller(self) -> None:
        while not self._stop.is_set():
            try:
                reply = await self.cache.Complete(
                    complete(self.tenant, next(self._prompts)), timeout=10
                )
                self.responses.append(reply)
            except grpc.aio.AioRpcError as e:
                self.failures.append(f"{e.code().name}: {e.details()}")

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._caller()) for _ in range(self.workers)]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    @property
    def calls(self) -> int:
        return len(self.responses) + len(self.failures)


async def test_redis_stopped_under_load_fails_no_call_and_loses_no_write(
    embedder_address, tenant, tmp_path
) -> None:
    redis = LocalRedis(free_port(), data_dir=tmp_path / "redis")
    redis.start()
    try:
        async with mesh(embedder_address, redis.url, shards=2) as m:
            load = Load(m["cache"], tenant)
            load.start()
            await asyncio.sleep(0.5)
            await asyncio.to_thread(redis.stop)
            during = load.calls
            await asyncio.sleep(3.0)  # Redis away for several seconds, calls keep coming
            during = load.calls - during
            await asyncio.to_thread(redis.start)
            await asyncio.sleep(0.5)
            await load.stop()
            assert load.failures == []
            assert during > 0  # calls were made while Redis was down
            degraded = [r for r in load.responses if "redis_unavailable" in r.cache.degraded]
            assert degraded, "no call saw Redis down: the outage did not happen under load"

            async def flushed() -> bool:
                stats = await m["admin"].Stats(cache_pb2.StatsRequest())
                return stats.total.redis_backlog == 0 and all(
                    s.redis_state == "up" for s in stats.shards
                )

            async with asyncio.timeout(20):
                while not await flushed():  # noqa: ASYNC110 - polls another process's state
                    await asyncio.sleep(0.1)
        stored = [r.cache for r in load.responses if r.cache.stored]
        assert len(stored) >= during
        async with aioredis.from_url(redis.url) as client, client.pipeline() as pipe:
            for c in stored:
                pipe.exists(entry_key(c.namespace, c.entry_id))
            present = await pipe.execute()
        assert sum(present) == len(stored), f"{len(stored) - sum(present)} writes lost"
        print(
            f"\nredis outage: {load.calls} calls ({during} while Redis was down, "
            f"{len(degraded)} answered degraded), {len(load.failures)} failed, "
            f"{len(stored)} entries stored, {len(stored) - sum(present)} lost"
        )
    finally:
        redis.stop()


@contextlib.contextmanager
def embedder_process(port: int, log: Path) -> subprocess.Popen:
    with log.open("a") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "embed_svc", "--port", str(port), "--metrics-port", "-1"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_serving(f"127.0.0.1:{port}", timeout=60, process=process)
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


async def test_embedder_killed_complete_still_answers_and_recovers(
    redis_server, tenant, tmp_path
) -> None:
    port = free_port()
    embedder = f"127.0.0.1:{port}"
    log = tmp_path / "embedder.log"
    async with mesh(embedder, redis_server.url, shards=1) as m:
        cache = m["cache"]
        with embedder_process(port, log) as process:
            first = await cache.Complete(complete(tenant, "How do I renew my passport?"))
            assert first.cache.status == cache_pb2.CACHE_STATUS_MISS
            process.send_signal(signal.SIGKILL)
            await asyncio.to_thread(process.wait, 30)
        # Killed: an exact repeat is still a hit, a new prompt goes straight to the LLM,
        # and Lookup says the cache is degraded.
        exact = await cache.Complete(complete(tenant, "How do I renew my passport?"))
        assert exact.cache.status == cache_pb2.CACHE_STATUS_HIT
        fresh = await cache.Complete(complete(tenant, "What is the capital of Peru?"))
        assert fresh.cache.status == cache_pb2.CACHE_STATUS_MISS and fresh.answer.text
        paraphrase = await cache.Lookup(
            cache_pb2.LookupRequest(
                scope=complete(tenant, "").scope, prompt="How can I renew my passport?"
            )
        )
        assert paraphrase.cache.status == cache_pb2.CACHE_STATUS_MISS
        assert "embedder_unavailable" in paraphrase.cache.degraded
        # Back on the same address: semantic hits return without restarting anything.
        with embedder_process(port, log):
            async with asyncio.timeout(30):
                while True:
                    again = await cache.Lookup(
                        cache_pb2.LookupRequest(
                            scope=complete(tenant, "").scope, prompt="How can I renew my passport?"
                        )
                    )
                    if again.cache.status == cache_pb2.CACHE_STATUS_HIT:
                        break
                    await asyncio.sleep(0.2)
            assert again.cache.kind == cache_pb2.MATCH_KIND_SEMANTIC and not again.cache.degraded


async def test_a_redis_restarted_empty_gets_back_what_the_shard_holds(
    embedder_address, tenant
) -> None:
    """Redis restarted without persistence (as a failover to an empty replica or a flush
    would leave it): the shard notices its marker is gone and writes back every entry it
    holds, so a shard started afterwards on that Redis finds them all."""
    redis = LocalRedis(free_port())  # no data directory: nothing survives a restart
    redis.start()
    try:
        async with single.serving(embedder_address, redis.url) as shard:
            stored = [
                await shard.stub.Complete(complete(f"{tenant}-{i % 3}", f"Question {i}?"))
                for i in range(12)
            ]
            await asyncio.to_thread(redis.stop)
            await asyncio.to_thread(redis.start)  # empty

            async def all_back() -> bool:
                async with aioredis.from_url(redis.url) as client, client.pipeline() as pipe:
                    for reply in stored:
                        pipe.exists(entry_key(reply.cache.namespace, reply.cache.entry_id))
                    return all(await pipe.execute())

            await eventually(all_back, within=20)
            stats = await shard.admin.Stats(cache_pb2.StatsRequest())
            assert stats.total.redis_written_back >= len(stored)
        async with single.serving(embedder_address, redis.url) as fresh:
            for i, reply in enumerate(stored):
                scope = complete(f"{tenant}-{i % 3}", "").scope
                again = await fresh.stub.Lookup(
                    cache_pb2.LookupRequest(scope=scope, prompt=f"Question {i}?")
                )
                assert again.cache.status == cache_pb2.CACHE_STATUS_HIT
                assert again.cache.entry_id == reply.cache.entry_id
    finally:
        redis.stop()


@contextlib.contextmanager
def frozen(process: subprocess.Popen) -> Iterator[None]:
    """The process stopped (SIGSTOP: alive, connections open, answering nothing), as a GC
    or CPU stall, a full disk or a black-holed connection leaves it, until the block ends."""
    process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        process.send_signal(signal.SIGCONT)


def lookup(tenant: str, prompt: str) -> cache_pb2.LookupRequest:
    return cache_pb2.LookupRequest(scope=complete(tenant, "").scope, prompt=prompt)


async def test_a_frozen_embedder_opens_the_circuit_and_lookups_stop_waiting(
    redis_server, tenant, tmp_path
) -> None:
    port = free_port()
    timeout = 1.0
    with embedder_process(port, tmp_path / "embedder.log") as process:
        async with single.serving(
            f"127.0.0.1:{port}",
            redis_server.url,
            embedder_timeout=timeout,
            embedder_breaker_failures=2,
            embedder_breaker_seconds=0.5,
        ) as shard:
            stub = shard.stub
            await stub.Complete(complete(tenant, "How do I renew my passport?"))
            with frozen(process):
                # Two new texts each wait the embedder's timeout, and the circuit opens ...
                for i in range(2):
                    waited = (await stub.Lookup(lookup(tenant, f"Where is Lima? ({i})"))).cache
                    assert "embedder_unavailable" in waited.degraded
                    assert waited.timings.embed_ms >= 0.9 * timeout * 1000
                stats = await shard.admin.Stats(cache_pb2.StatsRequest())
                assert stats.total.embedder_state == "open"
                # ... then nothing waits for it: a new text degrades at once, an exact repeat
                # still hits, a Complete miss goes straight to the LLM.
                fast = (await stub.Lookup(lookup(tenant, "Where is Quito?"))).cache
                assert "embedder_unavailable" in fast.degraded
                assert fast.timings.embed_ms < 0.2 * timeout * 1000
                exact = await stub.Lookup(lookup(tenant, "How do I renew my passport?"))
                assert exact.cache.status == cache_pb2.CACHE_STATUS_HIT
                llm = await stub.Complete(complete(tenant, "What is the capital of Peru?"))
                assert llm.answer.text and llm.cache.timings.embed_ms < 0.2 * timeout * 1000
            # Resumed: a background probe closes the circuit, semantic hits come back.
            paraphrase = lookup(tenant, "How can I renew my passport?")

            async def semantic_again() -> bool:
                reply = await stub.Lookup(paraphrase)
                return reply.cache.kind == cache_pb2.MATCH_KIND_SEMANTIC

            await eventually(semantic_again, within=30)
            stats = await shard.admin.Stats(cache_pb2.StatsRequest())
            assert stats.total.embedder_state == "up"
            # What was stored without a vector meanwhile is re-embedded in the background.
            stored_while_frozen = lookup(tenant, "What's the capital of Peru?")

            async def reembedded() -> bool:
                reply = await stub.Lookup(stored_while_frozen)
                return reply.cache.kind == cache_pb2.MATCH_KIND_SEMANTIC

            await eventually(reembedded, within=30)


async def test_a_frozen_embedder_costs_a_caller_half_its_deadline_at_most(
    redis_server, tenant, tmp_path
) -> None:
    """With the circuit still closed, an embedding waits at most half of what is left of the
    caller's deadline: the lookup answers degraded instead of running out of time."""
    port = free_port()
    with embedder_process(port, tmp_path / "embedder.log") as process:
        async with single.serving(
            f"127.0.0.1:{port}",
            redis_server.url,
            embedder_timeout=5.0,
            embedder_breaker_failures=100,
        ) as shard:
            await shard.stub.Complete(complete(tenant, "How do I renew my passport?"))
            with frozen(process):
                reply = await shard.stub.Lookup(lookup(tenant, "Where is Lima?"), timeout=1.0)
                assert "embedder_unavailable" in reply.cache.degraded
                assert reply.cache.timings.embed_ms <= 600
                # Through a router too: its forwarded message carries its own deadline.
                async with (
                    running_router(router_config(shards=shard.address)) as (router, _pool),
                    grpc.aio.insecure_channel(router.address) as channel,
                ):
                    routed = await SemanticCacheStub(channel).Lookup(
                        lookup(tenant, "Where is Quito?"), timeout=1.0
                    )
                    assert "embedder_unavailable" in routed.cache.degraded


@contextlib.asynccontextmanager
async def router_on(port: int, shards: str) -> AsyncIterator[None]:
    async with running_router(router_config(port=port, shards=shards)):
        yield


async def test_the_sdk_carries_callers_over_a_router_restart(
    embedder_address, redis_server, tenant
) -> None:
    async with mesh(embedder_address, redis_server.url, shards=1) as m:
        shards = ",".join(s.address for s in m["shards"])
        port = free_port()
        async with AsyncClient(
            f"127.0.0.1:{port}",
            tenant=tenant,
            timeout=15,
            retries=12,
            backoff=0.05,
            max_backoff=0.5,
        ) as client:
            done: list[str] = []

            async def caller(i: int) -> None:
                for j in range(15):
                    reply = await client.complete(f"caller {i} asks question {j} about tea")
                    done.append(reply.cache.status)
                    await asyncio.sleep(0.05)

            async with router_on(port, shards):
                callers = asyncio.gather(*(caller(i) for i in range(3)))
                await asyncio.sleep(0.3)
            # The router is gone; callers are retrying. It comes back on the same port.
            await asyncio.sleep(0.5)
            async with router_on(port, shards):
                await callers  # raises if any call failed
        assert len(done) == 45
        print(f"\nrouter restart: {len(done)} calls by 3 callers, 0 failed")
