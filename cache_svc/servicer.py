"""`semcache.v1.SemanticCache` and `Admin` on a shard: validate, call the Shard, map to proto."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator

import grpc

from cache_svc.entry import Answer, Usage
from cache_svc.llm import Delta, Done, LLMRequest, UpstreamError
from cache_svc.llm.base import Turn
from cache_svc.shard import EntryNotFoundError, Outcome, Query, Shard
from semcache import keys
from semcache.metadata import UPSTREAM_ERROR, UPSTREAM_STATUS
from semcache.runtime import validation
from semcache.v1 import cache_pb2, cache_pb2_grpc

log = logging.getLogger(__name__)

_STATUS = {
    "hit": cache_pb2.CACHE_STATUS_HIT,
    "miss": cache_pb2.CACHE_STATUS_MISS,
    "bypass": cache_pb2.CACHE_STATUS_BYPASS,
}
_KIND = {
    "exact": cache_pb2.MATCH_KIND_EXACT,
    "semantic": cache_pb2.MATCH_KIND_SEMANTIC,
    "": cache_pb2.MATCH_KIND_UNSPECIFIED,
}


def upstream_status(status: int) -> grpc.StatusCode:
    """The gRPC status for an upstream HTTP status (0: no answer at all)."""
    return {
        400: grpc.StatusCode.INVALID_ARGUMENT,
        401: grpc.StatusCode.UNAUTHENTICATED,
        403: grpc.StatusCode.PERMISSION_DENIED,
        404: grpc.StatusCode.NOT_FOUND,
        408: grpc.StatusCode.DEADLINE_EXCEEDED,
        409: grpc.StatusCode.ABORTED,
        422: grpc.StatusCode.INVALID_ARGUMENT,
        429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    }.get(status, grpc.StatusCode.UNAVAILABLE)


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


def deadline(context: grpc.aio.ServicerContext) -> float | None:
    """The caller's deadline as a `time.monotonic()` instant, None without one."""
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


def to_query(
    request: cache_pb2.LookupRequest | cache_pb2.CompleteRequest, context: grpc.aio.ServicerContext
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
        deadline=deadline(context),
    )


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


class CacheServicer(cache_pb2_grpc.SemanticCacheServicer):
    def __init__(self, shard: Shard, limits: validation.RequestLimits) -> None:
        self.shard = shard
        self.limits = limits

    def cache_info(self, outcome: Outcome, namespace: str) -> cache_pb2.CacheInfo:
        entry = outcome.entry
        t = outcome.timings
        age = time.time() - entry.created if entry is not None and not outcome.stored else 0.0
        decision = outcome.decision
        return cache_pb2.CacheInfo(
            status=_STATUS[outcome.status],
            kind=_KIND[outcome.kind],
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
            timings=cache_pb2.Timings(**{f"{k}_ms": 1000 * v for k, v in t.items()}),
            # proto3 optionals: None leaves them absent.
            runner_up_similarity=outcome.runner_up,
            fired_guards=decision.fired if decision else (),
            hit_probability=decision.probability if decision else None,
            hit_cut=decision.cut if decision else None,
        )

    async def _abort(self, context: grpc.aio.ServicerContext, error: Exception) -> None:
        match error:
            case validation.InvalidRequestError():
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
            case EntryNotFoundError():
                await context.abort(grpc.StatusCode.NOT_FOUND, str(error))
            case UpstreamError():
                # The shard itself is fine; the upstream's own status goes along.
                context.set_trailing_metadata(
                    (UPSTREAM_ERROR, (UPSTREAM_STATUS, str(error.status)))
                )
                await context.abort(upstream_status(error.status), str(error))
        raise error

    async def Lookup(
        self, request: cache_pb2.LookupRequest, context: grpc.aio.ServicerContext
    ) -> cache_pb2.LookupResponse:
        try:
            validation.check_lookup(request, self.limits)
            query = to_query(request, context)
            outcome = await self.shard.lookup(query)
        except (validation.InvalidRequestError, EntryNotFoundError) as e:
            await self._abort(context, e)
        response = cache_pb2.LookupResponse(cache=self.cache_info(outcome, query.namespace))
        if outcome.answer is not None:
            response.answer.CopyFrom(answer_to_proto(outcome.answer))
        return response

    async def Store(
        self, request: cache_pb2.StoreRequest, context: grpc.aio.ServicerContext
    ) -> cache_pb2.StoreResponse:
        try:
            validation.check_store(request, self.limits)
        except validation.InvalidRequestError as e:
            await self._abort(context, e)
        started = time.perf_counter()
        namespace = keys.namespace_key(request.scope)
        query = Query(
            namespace=namespace,
            tenant=keys.tenant_of(request.scope),
            prompt=request.prompt,
            category=request.category,
            ttl=request.ttl_seconds if request.HasField("ttl_seconds") else None,
            deadline=deadline(context),
        )
        entry, replaced = await self.shard.store_answer(query, answer_from_proto(request.answer))
        return cache_pb2.StoreResponse(
            entry_id=entry.id,
            shard=self.shard.shard_id,
            namespace=namespace,
            replaced=replaced,
            timings=cache_pb2.Timings(total_ms=1000 * (time.perf_counter() - started)),
        )

    async def Complete(
        self, request: cache_pb2.CompleteRequest, context: grpc.aio.ServicerContext
    ) -> cache_pb2.CompleteResponse:
        try:
            validation.check_lookup(request, self.limits)
            query = to_query(request, context)
            outcome = await self.shard.complete(query)
        except (validation.InvalidRequestError, UpstreamError) as e:
            await self._abort(context, e)
        assert outcome.answer is not None
        return cache_pb2.CompleteResponse(
            cache=self.cache_info(outcome, query.namespace), answer=answer_to_proto(outcome.answer)
        )

    async def StreamComplete(
        self, request: cache_pb2.CompleteRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[cache_pb2.CompleteChunk]:
        try:
            validation.check_lookup(request, self.limits)
            query = to_query(request, context)
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
        except (validation.InvalidRequestError, UpstreamError) as e:
            await self._abort(context, e)

    async def Invalidate(
        self, request: cache_pb2.InvalidateRequest, context: grpc.aio.ServicerContext
    ) -> cache_pb2.InvalidateResponse:
        target = request.target
        if target == cache_pb2.InvalidateRequest.TARGET_UNSPECIFIED and request.entry_id:
            target = cache_pb2.InvalidateRequest.TARGET_ENTRY
        tenant = keys.tenant_of(request.scope)
        try:
            validation.check_scope(request.scope, self.limits)
            if target == cache_pb2.InvalidateRequest.TARGET_ENTRY:
                validation.check_entry_id(request.entry_id)
                removed = await self.shard.invalidate_entry(request.entry_id, tenant)
            elif target == cache_pb2.InvalidateRequest.TARGET_NAMESPACE:
                removed = await self.shard.invalidate_namespace(keys.namespace_key(request.scope))
            elif target == cache_pb2.InvalidateRequest.TARGET_TENANT:
                removed = await self.shard.invalidate_tenant(tenant)
            else:
                raise validation.InvalidRequestError(
                    "target: set target (ENTRY, NAMESPACE or TENANT) or entry_id"
                )
        except (validation.InvalidRequestError, EntryNotFoundError) as e:
            await self._abort(context, e)
        return cache_pb2.InvalidateResponse(removed=removed)

    async def Feedback(
        self, request: cache_pb2.FeedbackRequest, context: grpc.aio.ServicerContext
    ) -> cache_pb2.FeedbackResponse:
        tenant = keys.tenant_of(request.scope)
        try:
            validation.check_scope(request.scope, self.limits)
            validation.check_entry_id(request.entry_id)
            if request.verdict == cache_pb2.FeedbackRequest.VERDICT_WRONG_HIT:
                return cache_pb2.FeedbackResponse(
                    removed=await self.shard.wrong_hit(request.entry_id, tenant)
                )
            if request.verdict == cache_pb2.FeedbackRequest.VERDICT_CORRECT_HIT:
                await self.shard.entry(request.entry_id, tenant)  # must exist and be theirs
                return cache_pb2.FeedbackResponse(removed=False)
            raise validation.InvalidRequestError("verdict: WRONG_HIT or CORRECT_HIT required")
        except (validation.InvalidRequestError, EntryNotFoundError) as e:
            await self._abort(context, e)
        raise AssertionError("unreachable")


class AdminServicer(cache_pb2_grpc.AdminServicer):
    def __init__(self, shard: Shard, address: str = "") -> None:
        self.shard = shard
        self.address = address

    async def Stats(
        self, request: cache_pb2.StatsRequest, context: grpc.aio.ServicerContext
    ) -> cache_pb2.StatsResponse:
        stats = self.shard.stats()
        shard = cache_pb2.ShardStats(
            shard=self.shard.shard_id, address=self.address, reachable=True, **stats
        )  # type: ignore[arg-type]
        return cache_pb2.StatsResponse(shards=[shard], total=shard)

    async def Ring(
        self, request: cache_pb2.RingRequest, context: grpc.aio.ServicerContext
    ) -> cache_pb2.RingResponse:
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED,
            "a shard has no ring: ask the router (semcache.v1.Admin/Ring)",
        )
        raise AssertionError("unreachable")
