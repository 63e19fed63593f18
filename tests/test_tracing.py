"""Traces across the hops: one trace per request, router -> shard -> embedder, through the
multiplexed internal streams, with the SDK's in-memory exporter (real servers, one process:
spans tell their service by their instrumentation scope)."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator

import grpc
import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from semcache.runtime import tracing
from semcache.runtime.telemetry import JsonFormatter
from semcache.v1 import cache_pb2, cache_pb2_grpc
from tests.fake_openai import FakeOpenAI
from tests.test_http import router_and_front

QUESTION = "How do I reset my router to factory settings?"
PARAPHRASE = "How can I reset my router to its factory settings?"
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    try:
        yield exporter
    finally:
        tracing.install(None)
        provider.shutdown()


@contextlib.asynccontextmanager
async def mesh(embedder_address: str, redis_url: str, upstream: FakeOpenAI):  # type: ignore[no-untyped-def]
    """A shard (openai backend -> the fake upstream), the router and its HTTP front: a stub
    of the router and the front's URL."""
    async with (
        router_and_front(embedder_address, redis_url, upstream) as (router, url),
        grpc.aio.insecure_channel(router) as channel,
    ):
        yield cache_pb2_grpc.SemanticCacheStub(channel), url


def request(tenant: str, prompt: str) -> cache_pb2.CompleteRequest:
    return cache_pb2.CompleteRequest(
        scope=cache_pb2.Scope(tenant=tenant, model="gpt-test"), prompt=prompt
    )


def one_trace(spans: list[ReadableSpan]) -> dict[str, ReadableSpan]:
    """The spans of one trace by name (each name once), checked to form one tree."""
    assert spans, "no spans"
    trace_ids = {s.context.trace_id for s in spans}
    assert len(trace_ids) == 1, f"{len(trace_ids)} traces"
    ids = {s.context.span_id for s in spans}
    roots = [s for s in spans if s.parent is None or s.parent.span_id not in ids]
    assert len(roots) == 1, [s.name for s in roots]
    return {s.name: s for s in spans}


def trace_of(exporter: InMemorySpanExporter, root_name: str) -> list[ReadableSpan]:
    finished = exporter.get_finished_spans()
    (root,) = [s for s in finished if s.name == root_name]
    return [s for s in finished if s.context.trace_id == root.context.trace_id]


def scope(span: ReadableSpan) -> str:
    assert span.instrumentation_scope is not None
    return span.instrumentation_scope.name


async def test_one_trace_spans_router_shard_and_embedder_for_a_miss_and_a_semantic_hit(
    embedder_address, redis_server, tenant, spans
) -> None:
    with FakeOpenAI() as upstream:
        async with mesh(embedder_address, redis_server.url, upstream) as (stub, _):
            miss = await stub.Complete(request(tenant, QUESTION))
            assert miss.cache.status == cache_pb2.CACHE_STATUS_MISS
            miss_spans = trace_of(spans, "semcache.v1.SemanticCache/Complete")
            spans.clear()
            hit = await stub.Complete(request(tenant, PARAPHRASE))
            assert hit.cache.kind == cache_pb2.MATCH_KIND_SEMANTIC
            hit_spans = trace_of(spans, "semcache.v1.SemanticCache/Complete")

    by_name = one_trace(miss_spans)
    assert {scope(s) for s in miss_spans} == {"router_svc", "cache_svc", "embed_svc"}
    router = by_name["semcache.v1.SemanticCache/Complete"]
    forward = by_name["forward"]
    shard = by_name["semcache.v1.ShardLink/Complete"]
    embedder = by_name["semcache.v1.Embedder/EmbedStream"]
    # The context crossed each hop inside the stream's messages: each side's parent is the
    # span on the other side.
    assert forward.parent is not None and forward.parent.span_id == router.context.span_id
    assert shard.parent is not None and shard.parent.span_id == forward.context.span_id
    embed = by_name["embed"]
    assert embedder.parent is not None and embedder.parent.span_id == embed.context.span_id
    assert {"hydrate", "exact", "embed", "search", "llm", "store"} <= set(by_name)
    assert scope(router) == "router_svc" and scope(shard) == "cache_svc"
    attributes = dict(router.attributes or {})
    assert attributes["semcache.status"] == "miss" and attributes["semcache.shard"]
    assert attributes["semcache.namespace"] == miss.cache.namespace

    by_name = one_trace(hit_spans)
    assert {scope(s) for s in hit_spans} == {"router_svc", "cache_svc", "embed_svc"}
    assert {"exact", "embed", "search", "policy"} <= set(by_name)
    assert "llm" not in by_name and "store" not in by_name
    shard_attributes = dict(by_name["semcache.v1.ShardLink/Complete"].attributes or {})
    assert shard_attributes["semcache.kind"] == "semantic"
    assert shard_attributes["semcache.similarity"] == pytest.approx(hit.cache.similarity)

    # No span carries prompt or answer text.
    for span in miss_spans + hit_spans:
        for value in (span.attributes or {}).values():
            text = json.dumps(value) if not isinstance(value, str) else value
            for secret in ("reset", "factory", "upstream."):
                assert secret not in text, (span.name, value)


async def test_a_callers_traceparent_continues_through_grpc_and_the_http_front(
    embedder_address, redis_server, tenant, spans
) -> None:
    parent_span = "00f067aa0ba902b7"
    traceparent = f"00-{CALLER_TRACE}-{parent_span}-01"
    with FakeOpenAI() as upstream:
        async with mesh(embedder_address, redis_server.url, upstream) as (stub, http_url):
            await stub.Complete(request(tenant, QUESTION), metadata=(("traceparent", traceparent),))
            grpc_spans = spans.get_finished_spans()
            spans.clear()
            async with httpx.AsyncClient(base_url=http_url) as http:
                reply = await http.post(
                    "/chat/completions",
                    json={"model": "gpt-test", "messages": [{"role": "user", "content": "Hi?"}]},
                    headers={"traceparent": traceparent, "X-Tenant-ID": tenant},
                )
            assert reply.status_code == 200
            http_spans = spans.get_finished_spans()

    for finished, root_name in (
        (grpc_spans, "semcache.v1.SemanticCache/Complete"),
        (http_spans, "POST /v1/chat/completions"),
    ):
        assert {format(s.context.trace_id, "032x") for s in finished} == {CALLER_TRACE}
        (root,) = [s for s in finished if s.name == root_name]
        assert root.parent is not None and format(root.parent.span_id, "016x") == parent_span
        assert {scope(s) for s in finished} == {"router_svc", "cache_svc", "embed_svc"}


def test_log_lines_carry_the_trace_and_span_ids(spans) -> None:
    formatter = JsonFormatter("cache_svc")
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "inside", None, None)
    with tracing.Tracer("cache_svc").span("stage") as span:
        assert span is not None
        line = json.loads(formatter.format(record))
    assert line["trace_id"] == format(span.get_span_context().trace_id, "032x")
    assert line["span_id"] == format(span.get_span_context().span_id, "016x")
    assert "trace_id" not in json.loads(formatter.format(record))  # outside any span


def test_tracing_is_off_unless_the_environment_names_an_exporter() -> None:
    assert tracing.exporters_from_env({}) == []
    assert tracing.exporters_from_env({"OTEL_TRACES_EXPORTER": "none"}) == []
    assert tracing.exporters_from_env({"OTEL_TRACES_EXPORTER": "console,otlp"}) == [
        "console",
        "otlp",
    ]
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"}
    assert tracing.exporters_from_env(endpoint) == ["otlp"]
    assert tracing.exporters_from_env(endpoint | {"OTEL_SDK_DISABLED": "true"}) == []
    with pytest.raises(tracing.TracingConfigError, match="zipkin"):
        tracing.exporters_from_env({"OTEL_TRACES_EXPORTER": "zipkin"})
    # Off, a span is no span and the next hop gets no context.
    tracing.install(None)
    with tracing.Tracer("cache_svc").span("stage") as span:
        assert span is None and tracing.carrier() == {} and tracing.ids() is None
