"""The shard's operations, one handler each, free of any transport: a request message and
the caller's deadline in, a response message (or a stream of chunks) out, or one typed
`CallError`. The public servicer (`servicer.py`) and the routers' ShardLink (`link.py`) are
thin adapters over them, so a call answers alike through either door.

`complete` and `stream_complete` share the shard's one read-through (`Shard._read_through`:
the LLM call, the store, metrics and timings); they differ only in who leads a flight: a
whole Complete may (concurrent misses on one prompt share its LLM call), a stream only joins
one, since its caller reads the LLM's answer live and may leave mid-way.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import time
from collections.abc import AsyncIterator, Callable, Iterator

import grpc

from cache_svc.entry import Answer, Entry, Usage
from cache_svc.export import Selection
from cache_svc.llm import Delta, Done, LLMRequest, UpstreamError
from cache_svc.llm.base import Turn
from cache_svc.shard import EntryNotFoundError, Outcome, Query, Shard
from cache_svc.store import StoreUnavailableError
from semcache import keys
from semcache.enums import KIND_VALUES, STATUS_VALUES
from semcache.runtime import tracing, validation
from semcache.runtime.status import CallError, import_failed
from semcache.v1 import cache_pb2

_Targets = cache_pb2.InvalidateRequest
_Verdicts = cache_pb2.FeedbackRequest


@contextlib.contextmanager
def _as_call_errors() -> Iterator[None]:
    """The domain's failures as the one error every transport understands."""
    try:
        yield
    except EntryNotFoundError as e:
        raise CallError(grpc.StatusCode.NOT_FOUND, str(e)) from None
    except UpstreamError as e:  # the shard is fine; the upstream's own status goes along
        raise CallError.from_upstream(e.failure, str(e)) from None
    except StoreUnavailableError as e:
        raise CallError(grpc.StatusCode.UNAVAILABLE, f"redis: {e}") from None


def llm_request(request: cache_pb2.CompleteRequest | cache_pb2.LookupRequest) -> LLMRequest:
    scope, params = request.scope, request.scope.params
    options: dict[str, object] = {
        n: getattr(params, n) for n in keys.OPTIONAL_PARAMS if params.HasField(n)
    }
    if params.stop:
        options["stop"] = list(params.stop)
    for name, value in params.extra.items():
        try:
            options[name] = json.loads(value)
        except (ValueError, RecursionError):
            options[name] = value  # not JSON: forwarded as the string it is
    return LLMRequest(
        model=scope.model,
        prompt=request.prompt,
        system_prompt=scope.system_prompt,
        history=tuple(Turn(t.role, t.content) for t in scope.history),
        params=options,
        raw_request_json=getattr(request, "upstream_request_json", ""),
    )


def to_query(
    request: cache_pb2.LookupRequest | cache_pb2.CompleteRequest, deadline: float | None
) -> Query:
    control = request.cache_control
    return Query(
        namespace=keys.namespace_key(request.scope),
        tenant=keys.tenant_of(request.scope),
        prompt=request.prompt,
        llm=llm_request(request),
        category=request.category,
        min_similarity=request.min_similarity if request.HasField("min_similarity") else None,
        no_cache=control.no_cache,
        no_store=control.no_store,
        max_age=control.max_age_seconds if control.HasField("max_age_seconds") else None,
        ttl=control.ttl_seconds if control.HasField("ttl_seconds") else None,
        deadline=deadline,
        # What a read-through miss stores with its namespace (a lookup stores nothing).
        scope=_serialiser(request.scope)
        if isinstance(request, cache_pb2.CompleteRequest) and not control.no_store
        else None,
    )


def _serialiser(scope: cache_pb2.Scope) -> Callable[[], bytes]:
    """The scope's serialisation, done only if the shard keeps it (`Query.scope`)."""
    return functools.partial(scope.SerializeToString, deterministic=True)


def answer_to_proto(answer: Answer) -> cache_pb2.Answer:
    return cache_pb2.Answer(
        text=answer.text,
        chunks=list(answer.chunks),
        finish_reason=answer.finish_reason,
        usage=usage_to_proto(answer.usage),
        metadata=answer.metadata,
    )


def usage_to_proto(usage: Usage) -> cache_pb2.Usage:
    return cache_pb2.Usage(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
    )


def answer_from_proto(answer: cache_pb2.Answer) -> Answer:
    chunks = tuple(answer.chunks)
    return Answer(
        text=answer.text or "".join(chunks),
        chunks=chunks,
        finish_reason=answer.finish_reason or "stop",
        usage=Usage(
            answer.usage.prompt_tokens, answer.usage.completion_tokens, answer.usage.total_tokens
        ),
        metadata=dict(answer.metadata),
    )


#: Entries in one ExportResponse at most, and the bytes past which a batch is sent sooner
#: (an answer may be 1 MiB; a message, 64 MiB).
EXPORT_BATCH = 256
EXPORT_BATCH_BYTES = 4 * 1024 * 1024


def exported_to_proto(entry: Entry, scope: bytes | None, now: float) -> cache_pb2.ExportedEntry:
    message = cache_pb2.ExportedEntry(
        entry_id=entry.id,
        namespace=entry.namespace,
        tenant=entry.tenant,
        prompt=entry.prompt,
        answer=answer_to_proto(entry.answer),
        category=entry.category,
        created_unix_seconds=entry.created,
        ttl_seconds=max(1, math.ceil(entry.expires - now)),
        hits=entry.hits,
    )
    if scope is not None:
        message.scope.ParseFromString(scope)
        message.scope.tenant = entry.tenant
    return message


class ShardHandlers:
    """Lookup, Store, Complete, StreamComplete, Invalidate and Feedback on one shard."""

    def __init__(self, shard: Shard, limits: validation.RequestLimits) -> None:
        self.shard = shard
        self.limits = limits

    def cache_info(self, outcome: Outcome, namespace: str) -> cache_pb2.CacheInfo:
        entry = outcome.entry
        age = time.time() - entry.created if entry is not None and not outcome.stored else 0.0
        decision = outcome.decision
        info = cache_pb2.CacheInfo(
            status=STATUS_VALUES[outcome.status],
            kind=KIND_VALUES[outcome.kind],
            similarity=outcome.similarity,
            threshold=outcome.threshold,
            entry_id=entry.id if entry else "",
            matched_prompt=outcome.closest_prompt,
            shard=self.shard.shard_id,
            namespace=namespace,
            category=outcome.category,
            coalesced=outcome.coalesced,
            stored=outcome.stored,
            age_seconds=max(0.0, age),
            degraded=outcome.degraded,
            guard=decision.guard if decision else "",
            timings=cache_pb2.Timings(**{f"{k}_ms": 1000 * v for k, v in outcome.timings.items()}),
            # proto3 optionals: None leaves them absent.
            runner_up_similarity=outcome.runner_up,
            fired_guards=decision.fired if decision else (),
            hit_probability=decision.probability if decision else None,
            hit_cut=decision.cut if decision else None,
        )
        tracing.annotate_cache(info)
        return info

    async def lookup(
        self, request: cache_pb2.LookupRequest, deadline: float | None
    ) -> cache_pb2.LookupResponse:
        with _as_call_errors():
            validation.check_lookup(request, self.limits)
            query = to_query(request, deadline)
            outcome = await self.shard.lookup(query)
        response = cache_pb2.LookupResponse(cache=self.cache_info(outcome, query.namespace))
        if outcome.answer is not None:
            response.answer.CopyFrom(answer_to_proto(outcome.answer))
        return response

    async def store(
        self, request: cache_pb2.StoreRequest, deadline: float | None, *, bulk: bool = False
    ) -> cache_pb2.StoreResponse:
        """Store; `bulk`: one of an import's (`Query.bulk`)."""
        with _as_call_errors():
            validation.check_store(request, self.limits)
        started = time.perf_counter()
        namespace = keys.namespace_key(request.scope)
        query = Query(
            namespace=namespace,
            tenant=keys.tenant_of(request.scope),
            prompt=request.prompt,
            category=request.category,
            ttl=request.ttl_seconds if request.HasField("ttl_seconds") else None,
            deadline=deadline,
            scope=_serialiser(request.scope),
            bulk=bulk,
        )
        entry, stored = await self.shard.store_answer(query, answer_from_proto(request.answer))
        return cache_pb2.StoreResponse(
            entry_id=entry.id,
            shard=self.shard.shard_id,
            namespace=namespace,
            replaced=stored == "replaced",
            unchanged=stored == "unchanged",
            timings=cache_pb2.Timings(total_ms=1000 * (time.perf_counter() - started)),
        )

    async def import_entry(
        self, request: cache_pb2.ImportRequest, deadline: float | None
    ) -> cache_pb2.ImportResponse:
        """One entry of an Import stream: stored as Store would, its failure answered."""
        try:
            return cache_pb2.ImportResponse(
                id=request.id, store=await self.store(request.store, deadline, bulk=True)
            )
        except CallError as e:
            return import_failed(request.id, e)

    async def complete(
        self, request: cache_pb2.CompleteRequest, deadline: float | None
    ) -> cache_pb2.CompleteResponse:
        """Read-through, whole. A miss here leads a flight (`Shard.complete`): concurrent
        misses on the prompt share its one LLM call."""
        with _as_call_errors():
            validation.check_lookup(request, self.limits)
            query = to_query(request, deadline)
            outcome = await self.shard.complete(query)
        assert outcome.answer is not None
        return cache_pb2.CompleteResponse(
            cache=self.cache_info(outcome, query.namespace), answer=answer_to_proto(outcome.answer)
        )

    async def stream_complete(
        self, request: cache_pb2.CompleteRequest, deadline: float | None
    ) -> AsyncIterator[cache_pb2.CompleteChunk]:
        """Read-through, streamed: a start chunk (the lookup's CacheInfo), the deltas, an
        end chunk (finish reason, usage, the final CacheInfo)."""
        with _as_call_errors():
            validation.check_lookup(request, self.limits)
            query = to_query(request, deadline)
            started = False
            done: Done | None = None
            async for event in self.shard.stream_complete(query):
                if isinstance(event, Delta):
                    yield cache_pb2.CompleteChunk(delta=event.text)
                elif isinstance(event, Done):
                    done = event
                elif not started:
                    started = True
                    yield cache_pb2.CompleteChunk(start=self.cache_info(event, query.namespace))
                else:
                    assert done is not None
                    yield cache_pb2.CompleteChunk(
                        end=cache_pb2.StreamEnd(
                            finish_reason=done.finish_reason,
                            usage=usage_to_proto(done.usage),
                            cache=self.cache_info(event, query.namespace),
                        )
                    )

    async def export(
        self, request: cache_pb2.ExportRequest, part: int = 0, parts: int = 1
    ) -> AsyncIterator[cache_pb2.ExportResponse]:
        """The selected entries (this shard's `part` of `parts`), a batch at a time."""
        with _as_call_errors():
            validation.check_export(request, self.limits)
            if parts and part >= parts:
                raise validation.InvalidRequestError(f"part: {part} is not below parts {parts}")
            selection = Selection(
                tenant=None if request.all_tenants else request.tenant or keys.DEFAULT_TENANT,
                namespace=request.namespace,
                part=part,
                parts=parts,
            )
            response, size = cache_pb2.ExportResponse(), 0
            async for batch in self.shard.export(selection):
                now = time.time()
                for entry in batch.entries:
                    response.entries.append(exported_to_proto(entry, batch.scope, now))
                    size += entry.size_bytes + len(batch.scope or b"")
                    if len(response.entries) == EXPORT_BATCH or size >= EXPORT_BATCH_BYTES:
                        yield response
                        response, size = cache_pb2.ExportResponse(), 0
            if response.entries:
                yield response

    async def invalidate(
        self, request: cache_pb2.InvalidateRequest
    ) -> cache_pb2.InvalidateResponse:
        tenant = keys.tenant_of(request.scope)
        with _as_call_errors():
            target = validation.check_invalidate(request, self.limits)
            if target == _Targets.TARGET_NAMESPACE:
                removed = await self.shard.invalidate_namespace(keys.namespace_key(request.scope))
            elif target == _Targets.TARGET_TENANT:
                removed = await self.shard.invalidate_tenant(tenant)
            else:
                validation.check_entry_id(request.entry_id)
                removed = await self.shard.invalidate_entry(request.entry_id, tenant)
        return cache_pb2.InvalidateResponse(removed=removed)

    async def feedback(self, request: cache_pb2.FeedbackRequest) -> cache_pb2.FeedbackResponse:
        tenant = keys.tenant_of(request.scope)
        with _as_call_errors():
            validation.check_feedback(request, self.limits)
            if request.verdict == _Verdicts.VERDICT_WRONG_HIT:
                return cache_pb2.FeedbackResponse(
                    removed=await self.shard.wrong_hit(request.entry_id, tenant)
                )
            await self.shard.entry(request.entry_id, tenant)  # must exist and be theirs
            return cache_pb2.FeedbackResponse(removed=False)
        raise AssertionError("unreachable")
