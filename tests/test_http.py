"""The OpenAI-compatible HTTP front, driven by the official `openai` package and by raw HTTP,
with a local fake OpenAI server as the upstream of the shards' `openai` backend."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
import openai
import pytest

from cache_svc.llm import OpenAIBackend
from cache_svc.service import running_shard
from router_svc import chat
from router_svc.http import running_http_front
from router_svc.service import running_router
from semcache.client import AsyncClient, scope_from_messages
from semcache.runtime import validation
from semcache.runtime.validation import RequestLimits
from semcache.v1 import cache_pb2, cache_pb2_grpc
from tests.conftest import router_config, shard_config
from tests.fake_openai import Behaviour, FakeOpenAI

QUESTION = "How do I renew my passport?"
PARAPHRASE = "How can I renew my passport?"


@contextlib.asynccontextmanager
async def front(
    embedder_address: str, redis_url: str, upstream: FakeOpenAI, tokens_file: Path | None = None
) -> AsyncIterator[str]:
    """Shard (openai backend -> the fake upstream), router, HTTP front; yields its base URL."""
    async with router_and_front(embedder_address, redis_url, upstream, tokens_file) as (_, url):
        yield url


@contextlib.asynccontextmanager
async def router_and_front(
    embedder_address: str, redis_url: str, upstream: FakeOpenAI, tokens_file: Path | None = None
) -> AsyncIterator[tuple[str, str]]:
    """As `front`; yields the router's address too."""
    async with contextlib.AsyncExitStack() as stack:
        shard, _ = await stack.enter_async_context(
            running_shard(
                shard_config(embedder=embedder_address, redis=redis_url, llm="openai"),
                llm=OpenAIBackend(upstream.base_url),
            )
        )
        router, _ = await stack.enter_async_context(
            running_router(router_config(shards=shard.address, tokens_file=tokens_file))
        )
        port = await stack.enter_async_context(
            running_http_front(router.address, auth=tokens_file is not None, models=["gpt-test"])
        )
        yield router.address, f"http://127.0.0.1:{port}/v1"


@pytest.fixture
def upstream() -> FakeOpenAI:
    with FakeOpenAI() as fake:
        yield fake


def sdk(base_url: str, tenant: str) -> openai.AsyncOpenAI:
    """The official client, as a user would point it at semcache (auth off: the tenant by
    header)."""
    return openai.AsyncOpenAI(
        base_url=base_url, api_key="unused", default_headers={"X-Tenant-ID": tenant}
    )


def messages(question: str, system: str = "You are helpful.") -> list[dict]:
    return [{"role": "system", "content": system}, {"role": "user", "content": question}]


async def test_the_openai_sdk_gets_a_miss_then_a_paraphrase_hit(
    embedder_address, redis_server, upstream, tenant
) -> None:
    async with front(embedder_address, redis_server.url, upstream) as base_url:
        client = sdk(base_url, tenant)
        first = await client.chat.completions.with_raw_response.create(
            model="gpt-test", messages=messages(QUESTION), temperature=0
        )
        miss = first.parse()
        assert first.headers["x-semcache"] == "miss"
        assert miss.choices[0].message.content == "Hello from upstream."
        assert miss.choices[0].finish_reason == "stop" and miss.object == "chat.completion"
        assert miss.usage.prompt_tokens == 7 and miss.model == "gpt-test"
        # The caller's request went upstream intact.
        assert upstream.requests[-1]["messages"] == messages(QUESTION)
        assert upstream.requests[-1]["temperature"] == 0

        second = await client.chat.completions.with_raw_response.create(
            model="gpt-test", messages=messages(PARAPHRASE), temperature=0
        )
        hit = second.parse()
        assert second.headers["x-semcache"] == "hit"
        similarity = float(second.headers["x-semcache-similarity"])
        assert similarity > 0.9 and float(second.headers["x-semcache-threshold"]) <= similarity
        assert second.headers["x-semcache-entry"] and len(upstream.requests) == 1
        assert hit.choices[0].message.content == "Hello from upstream."
        # The original usage, marked cached, never zeros.
        assert hit.usage.prompt_tokens == 7 and hit.usage.total_tokens == 10
        assert hit.usage.prompt_tokens_details.cached_tokens == 7

        # Another system prompt, model or temperature is another scope: a miss.
        for changed in (
            {"messages": messages(PARAPHRASE, "Be terse.")},
            {"temperature": 0.7},
            {"model": "gpt-other"},
        ):
            args = {"model": "gpt-test", "messages": messages(PARAPHRASE), "temperature": 0}
            other = await client.chat.completions.with_raw_response.create(**(args | changed))
            assert other.headers["x-semcache"] == "miss", changed
        # A miss says how close the best candidate came, and the bar it did not reach.
        unrelated = await client.chat.completions.with_raw_response.create(
            model="gpt-test", messages=messages("What is the tallest mountain?"), temperature=0
        )
        assert unrelated.headers["x-semcache"] == "miss"
        similarity = float(unrelated.headers["x-semcache-similarity"])
        assert 0 < similarity < float(unrelated.headers["x-semcache-threshold"])
        models = await client.models.list()
        assert [m.id for m in models.data] == ["gpt-test"]


async def test_streams_miss_then_replay_the_stored_chunks(
    embedder_address, redis_server, upstream, tenant
) -> None:
    async with front(embedder_address, redis_server.url, upstream) as base_url:
        client = sdk(base_url, tenant)
        seen = []
        for question in (QUESTION, PARAPHRASE):
            raw = await client.chat.completions.with_raw_response.create(
                model="gpt-test",
                messages=messages(question),
                stream=True,
                stream_options={"include_usage": True},
            )
            chunks = [c async for c in raw.parse()]
            seen.append((raw.headers["x-semcache"], chunks))
        assert [status for status, _ in seen] == ["miss", "hit"]
        for _, chunks in seen:
            assert chunks[0].choices[0].delta.role == "assistant"
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            assert text == "Hello from upstream."
            finals = [c.choices[0].finish_reason for c in chunks if c.choices]
            assert finals[-1] == "stop" and set(finals[:-1]) == {None}
            assert chunks[-1].usage.prompt_tokens == 7
            assert len({c.id for c in chunks}) == 1 and chunks[0].object == "chat.completion.chunk"
        # The hit replayed the stored chunks (three deltas), not one block of text.
        assert len([c for c in seen[1][1] if c.choices and c.choices[0].delta.content]) == 3
        assert len(upstream.requests) == 1


async def test_the_api_key_is_the_tenant_with_tokens_on(
    embedder_address, redis_server, upstream, tmp_path
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("key-alpha alpha\nkey-beta beta\n")
    async with front(embedder_address, redis_server.url, upstream, tokens) as base_url:
        alpha = openai.AsyncOpenAI(base_url=base_url, api_key="key-alpha")
        beta = openai.AsyncOpenAI(base_url=base_url, api_key="key-beta")
        for client, expected in ((alpha, "miss"), (alpha, "hit"), (beta, "miss")):
            raw = await client.chat.completions.with_raw_response.create(
                model="gpt-test", messages=messages(QUESTION)
            )
            assert raw.headers["x-semcache"] == expected
        with pytest.raises(openai.AuthenticationError):
            await openai.AsyncOpenAI(base_url=base_url, api_key="wrong").chat.completions.create(
                model="gpt-test", messages=messages(QUESTION)
            )


async def test_errors_come_in_openai_format_with_the_right_status(
    embedder_address, redis_server, upstream, tenant
) -> None:
    async with (
        front(embedder_address, redis_server.url, upstream) as base_url,
        httpx.AsyncClient(base_url=base_url, headers={"X-Tenant-ID": tenant}) as http,
    ):
        for raw in (b"{not json", b'{"model": "m", "temperature": NaN}', b"[" * 100_000):
            bad = await http.post("/chat/completions", content=raw)
            assert bad.status_code == 400 and "not valid JSON" in bad.json()["error"]["message"]
            assert bad.json()["error"]["type"] == "invalid_request_error"
        for body, param in (
            ({"messages": messages(QUESTION)}, "model"),
            ({"model": "m", "messages": []}, "messages"),
            ({"model": "m", "messages": messages(QUESTION), "temperature": "hot"}, "temperature"),
            ({"model": "m", "messages": messages(QUESTION), "n": 2}, "n"),
            (
                {
                    "model": "m",
                    "messages": messages(QUESTION),
                    "tools": [{"type": "function", "function": {"name": "f"}}],
                },
                "tools",
            ),
            (
                {"model": "m", "messages": messages(QUESTION), "stream_options": "yes"},
                "stream_options",
            ),
            (
                {"model": "m", "messages": messages(QUESTION), "stream_options": False},
                "stream_options",
            ),
            (
                {
                    "model": "m",
                    "messages": messages(QUESTION),
                    "stream_options": {"include_usage": "yes"},
                },
                "stream_options",
            ),
            ({"model": "m", "messages": messages(QUESTION), "tools": {}}, "tools"),
            ({"model": "m", "messages": messages(QUESTION), "n": True}, "n"),
            ({"model": "m", "messages": messages(QUESTION), "logprobs": 0}, "logprobs"),
            ({"model": "m", "messages": messages(QUESTION), "max_tokens": 1.5}, "max_tokens"),
            (
                {
                    "model": "m",
                    "messages": messages(QUESTION),
                    "max_tokens": 0,
                    "max_completion_tokens": 5,
                },
                "max_tokens",
            ),
        ):
            reply = await http.post("/chat/completions", json=body)
            assert reply.status_code == 400 and reply.json()["error"]["param"] == param, body
        # JSON may escape a lone surrogate, which is no text: refused, not a 500.
        surrogate = b'{"model": "m", "messages": [{"role": "user", "content": "caf\\udce9"}]}'
        reply = await http.post("/chat/completions", content=surrogate)
        assert reply.status_code == 400 and "surrogate" in reply.json()["error"]["message"]

        upstream.behaviour = Behaviour(
            status=429,
            error="slow down",
            error_type="requests",
            error_code="rate_limit_exceeded",
            retry_after="7",
        )
        body = {"model": "gpt-test", "messages": messages("What is the capital of Chile?")}
        for _ in range(2):  # passed through, and never cached: both calls reach upstream
            limited = await http.post("/chat/completions", json=body)
            assert limited.status_code == 429 and "slow down" in limited.json()["error"]["message"]
            # What the upstream said, as it said it: when to retry, its error's type and code.
            assert limited.headers["retry-after"] == "7"
            assert limited.json()["error"] | {"message": ""} == {
                "message": "",
                "type": "requests",
                "code": "rate_limit_exceeded",
                "param": None,
            }
        assert len(upstream.requests) == 2
        upstream.behaviour = Behaviour(
            status=400,
            error="temperature is out of range",
            error_type="invalid_request_error",
            error_code="invalid_value",
            error_param="temperature",
        )
        refused = await http.post("/chat/completions", json=body)
        assert refused.status_code == 400 and "retry-after" not in refused.headers
        assert refused.json()["error"]["param"] == "temperature"
        assert refused.json()["error"]["code"] == "invalid_value"
        upstream.behaviour = Behaviour(status=500, error="upstream broke")
        broken = await http.post("/chat/completions", json={**body, "stream": True})
        assert broken.status_code == 500 and broken.json()["error"]["type"] == "upstream_error"

        assert (await http.get("/models")).json()["object"] == "list"
        health = await http.get(base_url.removesuffix("/v1") + "/healthz")
        assert health.status_code == 200 and health.json()["status"] == "ok"


async def test_parts_cache_controls_and_non_text_bypass(
    embedder_address, redis_server, upstream, tenant
) -> None:
    async with (
        front(embedder_address, redis_server.url, upstream) as base_url,
        httpx.AsyncClient(base_url=base_url, headers={"X-Tenant-ID": tenant}) as http,
    ):
        parts = [
            {"type": "text", "text": "How do I renew"},
            {"type": "text", "text": "my passport?"},
        ]
        as_parts = {"model": "gpt-test", "messages": [{"role": "user", "content": parts}]}
        statuses = [
            (await http.post("/chat/completions", json=as_parts)).headers["x-semcache"]
            for _ in range(2)
        ]
        assert statuses == ["miss", "hit"]

        picture = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
        content = [{"type": "text", "text": "What is in this picture?"}, picture]
        image = {"model": "gpt-test", "messages": [{"role": "user", "content": content}]}
        for _ in range(2):
            reply = await http.post("/chat/completions", json=image)
            assert reply.status_code == 200 and reply.headers["x-semcache"] == "bypass"
        assert upstream.requests[-1]["messages"][0]["content"][1]["type"] == "image_url"

        fresh = {"model": "gpt-test", "messages": messages("Which planet is the largest?")}
        stored_not = await http.post(
            "/chat/completions", json=fresh, headers={"Cache-Control": "no-store"}
        )
        assert stored_not.headers["x-semcache"] == "miss"
        again = await http.post("/chat/completions", json=fresh)
        assert again.headers["x-semcache"] == "miss"  # the no-store answer was not kept
        skipped = await http.post(
            "/chat/completions", json=fresh, headers={"Cache-Control": "no-cache"}
        )
        assert skipped.headers["x-semcache"] == "bypass"


async def test_one_request_is_one_namespace_through_the_sdk_the_front_and_raw_grpc(
    embedder_address, redis_server, upstream, tenant
) -> None:
    """Model, system prompt, history and parameters (a number, a string and an object
    among them) stored through the SDK are found through the OpenAI front and by a raw gRPC
    call that follows the proto's comments (`extra` values as canonical JSON)."""
    system, history = "You are terse.", [("user", "Hi"), ("assistant", "Hello! Ünïcode.")]
    extra = {"reasoning_effort": "high", "response_format": {"type": "json_object"}}
    async with router_and_front(embedder_address, redis_server.url, upstream) as (router, url):
        async with AsyncClient(router, tenant=tenant) as cache:
            stored = await cache.complete(
                QUESTION,
                model="gpt-test",
                system=system,
                history=history,
                params={"temperature": 0.2, "extra": extra},
            )
        assert not stored.hit
        body = {
            "model": "gpt-test",
            "temperature": 0.2,
            **extra,
            "messages": [
                {"role": "system", "content": system},
                *({"role": role, "content": text} for role, text in history),
                {"role": "user", "content": QUESTION},
            ],
        }
        async with httpx.AsyncClient(timeout=30) as http:
            reply = await http.post(
                f"{url}/chat/completions", json=body, headers={"X-Tenant-ID": tenant}
            )
        assert reply.status_code == 200, reply.text
        assert reply.headers["x-semcache"] == "hit"
        assert reply.headers["x-semcache-entry"] == stored.cache.entry_id
        params = cache_pb2.GenerationParams(
            temperature=0.2,
            extra={"reasoning_effort": '"high"', "response_format": '{"type":"json_object"}'},
        )
        turns = [cache_pb2.Turn(role=role, content=text) for role, text in history]
        scope = cache_pb2.Scope(
            tenant=tenant, model="gpt-test", system_prompt=system, params=params, history=turns
        )
        async with grpc.aio.insecure_channel(router) as channel:
            raw = await cache_pb2_grpc.SemanticCacheStub(channel).Lookup(
                cache_pb2.LookupRequest(scope=scope, prompt=QUESTION)
            )
        assert raw.cache.kind == cache_pb2.MATCH_KIND_EXACT
        assert raw.cache.namespace == stored.cache.namespace


async def test_a_messages_list_is_one_namespace_through_the_sdk_helper_and_the_front(
    embedder_address, redis_server, upstream, tenant
) -> None:
    """`scope_from_messages` maps a conversation as the front does: leading developer and
    system messages, a turn with fields of its own, a named last user message."""
    conversation = [
        {"role": "developer", "content": "Answer in French."},
        {"role": "system", "content": [{"type": "text", "text": "Be terse."}]},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Bonjour.", "name": "bot"},
        {"role": "user", "content": QUESTION, "name": "ada"},
    ]
    prompt, scope = scope_from_messages(conversation, model="gpt-test", params={"temperature": 0.2})
    assert prompt == QUESTION and scope["system"] == "Answer in French.\n\nBe terse."
    async with router_and_front(embedder_address, redis_server.url, upstream) as (router, url):
        async with AsyncClient(router, tenant=tenant) as cache:
            stored = await cache.complete(prompt, **scope)
        assert not stored.hit
        body = {"model": "gpt-test", "temperature": 0.2, "messages": conversation}
        async with httpx.AsyncClient(timeout=30) as http:
            reply = await http.post(
                f"{url}/chat/completions", json=body, headers={"X-Tenant-ID": tenant}
            )
        assert reply.status_code == 200, reply.text
        assert reply.headers["x-semcache"] == "hit"
        assert reply.headers["x-semcache-entry"] == stored.cache.entry_id
    with pytest.raises(ValueError, match="cannot be cached"):
        scope_from_messages([*conversation, {"role": "assistant", "content": "Ça va"}])


def test_a_request_beyond_the_cache_limits_goes_upstream_as_sent() -> None:
    """Too big to key (the same limits the router enforces on gRPC callers): bypassed, not
    refused."""
    small = {"model": "gpt-test", "messages": messages(QUESTION)}
    assert not chat.parse(small, "t").bypass
    limits = RequestLimits()
    for big in (
        messages(QUESTION, system="x" * (limits.max_system_prompt_bytes + 1)),
        messages("y" * (limits.max_prompt_bytes + 1)),
    ):
        call = chat.parse({"model": "gpt-test", "messages": big}, "t")
        assert call.bypass and call.request.cache_control.no_store
    # Within a router's raised limit, the same long prompt is cached.
    long = {"model": "gpt-test", "messages": messages("y" * (limits.max_prompt_bytes + 1))}
    raised = RequestLimits(max_prompt_bytes=2 * limits.max_prompt_bytes)
    assert not chat.parse(long, "t", limits=raised).bypass
    # A router whose limit is lower than what a bypass sends of the prompt: still within it.
    for low in (512, 1):
        lowered = RequestLimits(max_prompt_bytes=low)
        call = chat.parse(
            {"model": "gpt-test", "messages": messages("é" * 2000)}, "t", limits=lowered
        )
        assert call.bypass
        validation.check_lookup(call.request, lowered)
    # A model name over the limit in bytes though not in characters: the bypass request
    # must still pass the router's checks, or the caller gets a 400 instead of the upstream.
    call = chat.parse({"model": "é" * limits.max_name_bytes, "messages": messages(QUESTION)}, "t")
    assert call.bypass
    validation.check_lookup(call.request, limits)
    assert call.model == "é" * limits.max_name_bytes  # what goes upstream is as sent
