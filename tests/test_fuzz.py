"""Bad input and isolation through the router, with hypothesis.

Fuzz: any request (random unicode, megabyte strings, NaN and infinite numbers, unknown enum
values, missing and huge nested fields, random tokens and binary metadata) gets a status a
caller can act on — never INTERNAL or UNKNOWN — and every server keeps serving.

Isolation: entries stored under random tenants, models and system prompts that share the
same questions are never returned to another scope; with tokens on, one tenant's token can
neither read, invalidate nor give feedback on another tenant's entries.
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from semcache.v1 import cache_pb2, cache_pb2_grpc
from tests.test_router import mesh

#: What a caller may get back for a bad or unauthorised request. NOT_FOUND (an unknown entry
#: id) and PERMISSION_DENIED (a token naming another tenant) are the right answers to those.
ACCEPTABLE = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.NOT_FOUND,
}
TOKENS = {"tok-alpha": "alpha", "tok-beta": "beta", "tok-operator": "*"}
FUZZ_SETTINGS = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,  # the same examples every run: a failure here is reproducible
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.just(math.nan))
texts = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=300),
    st.sampled_from(["", " ", "\x00", "\u202e", "x" * 40_000, "é" * 1_000_000]),
)
ints64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)


@st.composite
def scopes(draw: st.DrawFn) -> cache_pb2.Scope:
    params = cache_pb2.GenerationParams(stop=draw(st.lists(texts, max_size=3)))
    if draw(st.booleans()):
        params.temperature = draw(numbers)
        params.top_p = draw(numbers)
        params.seed = draw(ints64)
        params.max_tokens = draw(st.integers(0, 2**32 - 1))
        params.extra.update(draw(st.dictionaries(texts, texts, max_size=3)))
    short = st.text(max_size=20)
    history = [
        cache_pb2.Turn(role=draw(short), content=draw(short))
        for _ in range(draw(st.sampled_from([0, 1, 3, 300])))
    ]
    tenant = draw(st.one_of(st.just(""), st.just("alpha"), texts))
    return cache_pb2.Scope(
        tenant=tenant, model=draw(texts), system_prompt=draw(texts), params=params, history=history
    )


@st.composite
def controls(draw: st.DrawFn) -> cache_pb2.CacheControl:
    control = cache_pb2.CacheControl(no_cache=draw(st.booleans()), no_store=draw(st.booleans()))
    if draw(st.booleans()):
        control.max_age_seconds = draw(ints64)
        control.ttl_seconds = draw(ints64)
    return control


@st.composite
def calls(draw: st.DrawFn) -> tuple[str, object]:
    method = draw(
        st.sampled_from(["Lookup", "Store", "Complete", "StreamComplete", "Invalidate", "Feedback"])
    )
    scope = draw(st.one_of(st.none(), scopes()))
    if method in ("Lookup", "Complete", "StreamComplete"):
        cls = cache_pb2.LookupRequest if method == "Lookup" else cache_pb2.CompleteRequest
        request = cls(
            scope=scope, prompt=draw(texts), category=draw(texts), cache_control=draw(controls())
        )
        if draw(st.booleans()):
            request.min_similarity = draw(numbers)
        if method != "Lookup":
            request.upstream_request_json = draw(st.sampled_from(["", "{", "[]", '{"a": 1}']))
    elif method == "Store":
        answer = cache_pb2.Answer(
            text=draw(texts), chunks=draw(st.lists(texts, max_size=4)), finish_reason=draw(texts)
        )
        request = cache_pb2.StoreRequest(
            scope=scope, prompt=draw(texts), answer=answer, category=draw(texts)
        )
        if draw(st.booleans()):
            request.ttl_seconds = draw(ints64)
    elif method == "Invalidate":
        request = cache_pb2.InvalidateRequest(
            scope=scope, entry_id=draw(texts), target=draw(st.integers(-5, 10))
        )
    else:
        request = cache_pb2.FeedbackRequest(
            scope=scope, entry_id=draw(texts), verdict=draw(st.integers(-5, 10)), prompt=draw(texts)
        )
    # Mostly real tokens, so most calls get past auth to validation and the shards.
    printable = st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=20)
    token = draw(st.one_of(printable, *[st.just(t) for t in TOKENS for _ in range(3)]))
    metadata = [("authorization", f"Bearer {token}")] if draw(st.integers(0, 9)) else []
    if draw(st.booleans()):
        metadata.append(("x-fuzz-bin", draw(st.binary(max_size=64))))  # not UTF-8 at all
    return method, request, tuple(metadata)


def tokens_file(directory: Path) -> Path:
    path = directory / "tokens"
    path.write_text("".join(f"{token} {tenant}\n" for token, tenant in TOKENS.items()))
    return path


async def test_the_router_answers_any_request_with_a_status_a_caller_can_act_on(
    embedder_address, redis_server, tmp_path
) -> None:
    async with mesh(embedder_address, redis_server.url, tokens_file=tokens_file(tmp_path)) as m:
        address = m["address"]
        seen: set[str] = set()

        def fuzz() -> None:
            with grpc.insecure_channel(address) as channel:
                stub = cache_pb2_grpc.SemanticCacheStub(channel)

                @FUZZ_SETTINGS
                @given(call=calls())
                def one(call: tuple[str, object, tuple]) -> None:
                    method, request, metadata = call
                    rpc = getattr(stub, method)
                    try:
                        reply = rpc(request, metadata=metadata, timeout=20)
                        if method == "StreamComplete":
                            list(reply)
                        code = grpc.StatusCode.OK
                    except grpc.RpcError as e:
                        code = e.code()
                        assert code in ACCEPTABLE, (method, code, e.details(), request)
                    seen.add(code.name)

                one()

        await asyncio.to_thread(fuzz)
        # The fuzz reached past auth and validation, not only their refusals.
        assert {"OK", "INVALID_ARGUMENT", "UNAUTHENTICATED"} <= seen, seen
        for server in [*m["shards"]]:
            async with grpc.aio.insecure_channel(server.address) as channel:
                health = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=2
                )
            assert health.status == health_pb2.HealthCheckResponse.SERVING
        async with grpc.aio.insecure_channel(address) as channel:
            health = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=2
            )
        assert health.status == health_pb2.HealthCheckResponse.SERVING


QUESTIONS = [
    "How do I reset my password?",
    "What is the capital of France?",
    "How can I renew my passport?",
]
scope_parts = st.fixed_dictionaries(
    {
        "tenant": st.sampled_from(["t1", "t2", "t3"]),
        "model": st.sampled_from(["", "m1", "m2"]),
        "system_prompt": st.sampled_from(["", "You are terse.", "You are a pirate."]),
    }
)


async def test_no_answer_crosses_scopes(embedder_address, redis_server, tenant) -> None:
    async with mesh(embedder_address, redis_server.url) as m:
        address = m["address"]

        def explore() -> None:
            stored: dict[tuple, set[str]] = {}  # scope -> questions stored under it
            with grpc.insecure_channel(address) as channel:
                stub = cache_pb2_grpc.SemanticCacheStub(channel)

                @settings(max_examples=60, deadline=None, derandomize=True)
                @given(
                    writer=scope_parts,
                    reader=scope_parts,
                    question=st.sampled_from(QUESTIONS),
                    paraphrase=st.booleans(),
                )
                def one(writer: dict, reader: dict, question: str, paraphrase: bool) -> None:
                    w = cache_pb2.Scope(**{**writer, "tenant": tenant + writer["tenant"]})
                    r = cache_pb2.Scope(**{**reader, "tenant": tenant + reader["tenant"]})
                    stub.Store(
                        cache_pb2.StoreRequest(
                            scope=w,
                            prompt=question,
                            answer=cache_pb2.Answer(text=f"{sorted(writer.items())}"),
                        )
                    )
                    stored.setdefault(tuple(sorted(writer.items())), set()).add(question)
                    asked = question.replace("How do I", "How can I") if paraphrase else question
                    reply = stub.Lookup(cache_pb2.LookupRequest(scope=r, prompt=asked))
                    if reply.cache.status == cache_pb2.CACHE_STATUS_HIT:
                        # A hit carries the answer of the reader's own scope, never another's.
                        assert reply.answer.text == f"{sorted(reader.items())}"
                        assert question in stored[tuple(sorted(reader.items()))]
                    elif reader == writer:
                        assert paraphrase, "an exact repeat in its own scope must hit"

                one()

        await asyncio.to_thread(explore)


async def test_a_token_cannot_touch_another_tenants_entries(
    embedder_address, redis_server, tmp_path
) -> None:
    async with mesh(embedder_address, redis_server.url, tokens_file=tokens_file(tmp_path)) as m:
        cache = m["cache"]
        alpha = (("authorization", "Bearer tok-alpha"),)
        beta = (("authorization", "Bearer tok-beta"),)
        prompt = "What is the boiling point of water at sea level?"
        stored = await cache.Store(
            cache_pb2.StoreRequest(
                scope=cache_pb2.Scope(), prompt=prompt, answer=cache_pb2.Answer(text="100 C")
            ),
            metadata=alpha,
        )
        # beta asks the same question, in its own scope and naming alpha's
        own = await cache.Lookup(cache_pb2.LookupRequest(prompt=prompt), metadata=beta)
        assert own.cache.status == cache_pb2.CACHE_STATUS_MISS
        for request, call in (
            (
                cache_pb2.LookupRequest(scope=cache_pb2.Scope(tenant="alpha"), prompt=prompt),
                cache.Lookup,
            ),
            (
                cache_pb2.InvalidateRequest(
                    scope=cache_pb2.Scope(tenant="alpha"), entry_id=stored.entry_id
                ),
                cache.Invalidate,
            ),
            (
                cache_pb2.FeedbackRequest(
                    scope=cache_pb2.Scope(tenant="alpha"),
                    entry_id=stored.entry_id,
                    verdict=cache_pb2.FeedbackRequest.VERDICT_WRONG_HIT,
                ),
                cache.Feedback,
            ),
        ):
            try:
                await call(request, metadata=beta)
                raise AssertionError(f"{type(request).__name__} naming alpha was served to beta")
            except grpc.aio.AioRpcError as e:
                assert e.code() == grpc.StatusCode.PERMISSION_DENIED
        # beta's own scope does not reach alpha's entry by id either
        for request, call in (
            (cache_pb2.InvalidateRequest(entry_id=stored.entry_id), cache.Invalidate),
            (
                cache_pb2.FeedbackRequest(
                    entry_id=stored.entry_id, verdict=cache_pb2.FeedbackRequest.VERDICT_WRONG_HIT
                ),
                cache.Feedback,
            ),
        ):
            try:
                reply = await call(request, metadata=beta)
                assert not getattr(reply, "removed", 0)
            except grpc.aio.AioRpcError as e:
                assert e.code() == grpc.StatusCode.NOT_FOUND
        still = await cache.Lookup(cache_pb2.LookupRequest(prompt=prompt), metadata=alpha)
        assert still.cache.status == cache_pb2.CACHE_STATUS_HIT and still.answer.text == "100 C"
