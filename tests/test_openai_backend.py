"""The `openai` backend against a local fake OpenAI server, through a real shard."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator

import grpc
import pytest

from cache_svc.llm import OpenAIBackend
from cache_svc.service import running_shard
from semcache.v1 import cache_pb2, cache_pb2_grpc
from tests.conftest import shard_config
from tests.fake_openai import Behaviour, FakeOpenAI


@pytest.fixture
def upstream():
    with FakeOpenAI() as fake:
        yield fake


@contextlib.asynccontextmanager
async def shard_on(
    upstream: FakeOpenAI, embedder_address: str, redis_url: str
) -> AsyncIterator[cache_pb2_grpc.SemanticCacheStub]:
    config = shard_config(embedder=embedder_address, redis=redis_url, llm="openai")
    backend = OpenAIBackend(upstream.base_url, timeout=5)
    async with (
        running_shard(config, llm=backend) as (server, _),
        grpc.aio.insecure_channel(server.address) as channel,
    ):
        yield cache_pb2_grpc.SemanticCacheStub(channel)


def request(tenant: str, prompt: str, **fields) -> cache_pb2.CompleteRequest:
    scope = cache_pb2.Scope(
        tenant=tenant,
        model="gpt-test",
        system_prompt="Be brief.",
        params=cache_pb2.GenerationParams(temperature=0.2),
        history=[
            cache_pb2.Turn(role="user", content="hi"),
            cache_pb2.Turn(role="assistant", content="hello"),
        ],
    )
    return cache_pb2.CompleteRequest(scope=scope, prompt=prompt, **fields)


async def test_miss_calls_upstream_then_hits(
    upstream, embedder_address, redis_server, tenant
) -> None:
    async with shard_on(upstream, embedder_address, redis_server.url) as stub:
        first = await stub.Complete(request(tenant, "What is a semantic cache?"))
        assert first.cache.status == cache_pb2.CACHE_STATUS_MISS
        assert first.answer.text == "Hello from upstream."
        assert list(first.answer.chunks) == ["Hello", " from", " upstream."]
        assert first.answer.usage.total_tokens == 10
        sent = upstream.requests[0]
        assert sent["model"] == "gpt-test" and sent["temperature"] == 0.2 and sent["stream"]
        assert sent["messages"] == [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "What is a semantic cache?"},
        ]
        again = await stub.Complete(request(tenant, "What's a semantic cache?"))
        assert again.cache.status == cache_pb2.CACHE_STATUS_HIT
        assert again.answer.usage.total_tokens == 10  # the original cost, reported again
        assert len(upstream.requests) == 1


async def test_callers_request_is_forwarded_intact(
    upstream, embedder_address, redis_server, tenant
) -> None:
    raw = {"model": "gpt-raw", "messages": [{"role": "user", "content": "raw"}], "top_k": 3}
    async with shard_on(upstream, embedder_address, redis_server.url) as stub:
        await stub.Complete(request(tenant, "raw", upstream_request_json=json.dumps(raw)))
    assert upstream.requests[0] | {"stream": True} == raw | {
        "stream": True,
        "stream_options": {"include_usage": True},
    }


async def test_upstream_error_is_passed_on_and_never_cached(
    upstream, embedder_address, redis_server, tenant
) -> None:
    upstream.behaviour = Behaviour(status=429, error="slow down")
    async with shard_on(upstream, embedder_address, redis_server.url) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.Complete(request(tenant, "Will this be cached?"))
        assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "429" in error.value.details() and "slow down" in error.value.details()
        upstream.behaviour = Behaviour()
        ok = await stub.Complete(request(tenant, "Will this be cached?"))
        assert ok.cache.status == cache_pb2.CACHE_STATUS_MISS
    assert len(upstream.requests) == 2


async def test_a_broken_stream_stores_nothing(
    upstream, embedder_address, redis_server, tenant
) -> None:
    upstream.behaviour = Behaviour(chunks=["partial", " answer", " here"], break_after=1)
    async with shard_on(upstream, embedder_address, redis_server.url) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.Complete(request(tenant, "A question with a broken answer"))
        assert error.value.code() == grpc.StatusCode.UNAVAILABLE
        received = []
        with pytest.raises(grpc.aio.AioRpcError):
            async for chunk in stub.StreamComplete(
                request(tenant, "A question with a broken answer")
            ):
                received.append(chunk.WhichOneof("event"))
        assert received[:2] == ["start", "delta"] and "end" not in received
        upstream.behaviour = Behaviour()
        after = await stub.Complete(request(tenant, "A question with a broken answer"))
        assert after.cache.status == cache_pb2.CACHE_STATUS_MISS
        assert after.answer.text == "Hello from upstream."
