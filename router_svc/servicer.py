"""The router's `SemanticCache` and `Admin`: validate, pick the shard by namespace, forward.

Calls go to the namespace's owner on the ring with the caller's remaining deadline. When
that shard is UNAVAILABLE (down, not an upstream LLM error), or is ejected from the ring
while the call waits on it (frozen: it stopped answering health checks), the next shard in
the ring's order takes the call and hydrates the namespace from Redis. A stream fails over
only before its first message.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc

from router_svc.link import rpc_error
from router_svc.pool import Member, ShardPool
from semcache import keys
from semcache.metadata import UPSTREAM_ERROR
from semcache.runtime import auth, validation
from semcache.v1 import cache_pb2, cache_pb2_grpc

T = TypeVar("T")

_AUTH_CODES = {
    auth.UnauthenticatedError: grpc.StatusCode.UNAUTHENTICATED,
    auth.PermissionDeniedError: grpc.StatusCode.PERMISSION_DENIED,
}


def _is_shard_down(error: grpc.aio.AioRpcError) -> bool:
    if error.code() != grpc.StatusCode.UNAVAILABLE:
        return False
    return UPSTREAM_ERROR not in tuple(error.trailing_metadata() or ())


async def _pass_on(error: grpc.aio.AioRpcError, context: grpc.aio.ServicerContext) -> None:
    """Ends the call with the shard's status, details and trailing metadata (which says
    whether an UNAVAILABLE came from the LLM upstream: clients must not retry those)."""
    context.set_trailing_metadata(tuple(error.trailing_metadata() or ()))
    await context.abort(error.code(), error.details() or "")


class Router:
    """Auth, forwarding and failover; shared by both servicers."""

    def __init__(
        self, pool: ShardPool, default_timeout: float, tokens: auth.TokenMap | None = None
    ) -> None:
        self.pool = pool
        self.default_timeout = default_timeout
        self.tokens = tokens

    async def authorize(self, scope: cache_pb2.Scope, context: grpc.aio.ServicerContext) -> None:
        """With tokens on, sets `scope.tenant` to the caller's tenant, or aborts the call
        (UNAUTHENTICATED without a known token, PERMISSION_DENIED naming another tenant)."""
        if self.tokens is None:
            return
        token = auth.bearer_token(context.invocation_metadata() or ())
        try:
            scope.tenant = self.tokens.tenant_of_request(token, scope.tenant)
        except auth.AuthError as e:
            await context.abort(_AUTH_CODES[type(e)], str(e))

    async def authorize_operator(self, context: grpc.aio.ServicerContext) -> None:
        if self.tokens is None:
            return
        try:
            self.tokens.require_operator(auth.bearer_token(context.invocation_metadata() or ()))
        except auth.AuthError as e:
            await context.abort(_AUTH_CODES[type(e)], str(e))

    def _timeout(self, context: grpc.aio.ServicerContext) -> float:
        remaining = context.time_remaining()
        return self.default_timeout if remaining is None else max(remaining, 0.001)

    async def unary(
        self,
        key: str,
        call: Callable[[Member, float], Awaitable[T]],
        context: grpc.aio.ServicerContext,
    ) -> T:
        last = "no healthy shard"
        for member in self.pool.order(key):
            member.in_flight += 1
            try:
                return await _unless_ejected(member, call(member, self._timeout(context)))
            except grpc.aio.AioRpcError as e:
                if not _is_shard_down(e):
                    await _pass_on(e, context)
                self.pool.record_failure(member, e.code().name)
                last = f"{member.id}: {e.details()}"
            finally:
                member.in_flight -= 1
        await context.abort(grpc.StatusCode.UNAVAILABLE, f"no shard could serve: {last}")
        raise AssertionError("unreachable")


async def _unless_ejected(member: Member, call: Awaitable[T]) -> T:
    """The call's result, or UNAVAILABLE as soon as the member is ejected from the ring
    (the call is then cancelled: the shard drops it, if it ever reads it)."""
    answer = asyncio.ensure_future(call)
    ejected = asyncio.ensure_future(member.ejected.wait())
    try:
        await asyncio.wait((answer, ejected), return_when=asyncio.FIRST_COMPLETED)
        if answer.done():
            return answer.result()
        raise rpc_error(
            grpc.StatusCode.UNAVAILABLE,
            f"{member.id} left the ring: {member.last_error or 'failing'}",
        )
    finally:
        for task in (answer, ejected):
            task.cancel()
        await asyncio.gather(answer, ejected, return_exceptions=True)


def _add_route_time(info: cache_pb2.CacheInfo, started: float) -> None:
    total_ms = 1000 * (time.perf_counter() - started)
    info.timings.route_ms = max(0.0, total_ms - info.timings.total_ms)
    info.timings.total_ms = total_ms


class RouterCacheServicer(cache_pb2_grpc.SemanticCacheServicer):
    def __init__(self, router: Router, limits: validation.RequestLimits) -> None:
        self.router = router
        self.limits = limits

    async def _invalid(self, context: grpc.aio.ServicerContext, error: Exception) -> None:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))

    async def _read(
        self,
        kind: str,
        request: cache_pb2.LookupRequest | cache_pb2.CompleteRequest,
        context: grpc.aio.ServicerContext,
    ) -> Any:
        """Lookup and Complete: validate, forward to the namespace's shard, add route time."""
        started = time.perf_counter()
        await self.router.authorize(request.scope, context)
        try:
            validation.check_lookup(request, self.limits)
        except validation.InvalidRequestError as e:
            await self._invalid(context, e)
        response = await self.router.unary(
            keys.namespace_key(request.scope),
            lambda m, t: m.link.call(kind, request, t),
            context,
        )
        _add_route_time(response.cache, started)
        return response

    async def Lookup(
        self, request: cache_pb2.LookupRequest, context: grpc.aio.ServicerContext
    ) -> cache_pb2.LookupResponse:
        return await self._read("lookup", request, context)

    async def Store(
        self, request: cache_pb2.StoreRequest, context: grpc.aio.ServicerContext
    ) -> cache_pb2.StoreResponse:
        started = time.perf_counter()
        await self.router.authorize(request.scope, context)
        try:
            validation.check_store(request, self.limits)
        except validation.InvalidRequestError as e:
            await self._invalid(context, e)
        response = await self.router.unary(
            keys.namespace_key(request.scope),
            lambda m, t: m.link.call("store", request, t),
            context,
        )
        response.timings.route_ms = max(
            0.0, 1000 * (time.perf_counter() - started) - response.timings.total_ms
        )
        return response

    async def Complete(
        self, request: cache_pb2.CompleteRequest, context: grpc.aio.ServicerContext
    ) -> cache_pb2.CompleteResponse:
        return await self._read("complete", request, context)

    async def StreamComplete(
        self, request: cache_pb2.CompleteRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[cache_pb2.CompleteChunk]:
        await self.router.authorize(request.scope, context)
        try:
            validation.check_lookup(request, self.limits)
        except validation.InvalidRequestError as e:
            await self._invalid(context, e)
        last = "no healthy shard"
        for member in self.router.pool.order(keys.namespace_key(request.scope)):
            member.in_flight += 1
            sent = False
            call: grpc.aio.UnaryStreamCall | None = None
            try:
                call = member.cache.StreamComplete(request, timeout=self.router._timeout(context))
                chunks = aiter(call)
                # Until the first message the stream can still go elsewhere: not if the
                # shard froze (ejected) meanwhile.
                first = await _unless_ejected(member, anext(chunks, None))
                if first is None:
                    return
                sent = True
                yield first
                async for chunk in chunks:
                    yield chunk
                return
            except grpc.aio.AioRpcError as e:
                if call is not None:
                    call.cancel()  # ended already, or left behind on an ejected shard
                if sent or not _is_shard_down(e):
                    await _pass_on(e, context)
                self.router.pool.record_failure(member, e.code().name)
                last = f"{member.id}: {e.details()}"
            finally:
                member.in_flight -= 1
        await context.abort(grpc.StatusCode.UNAVAILABLE, f"no shard could serve: {last}")

    async def Invalidate(
        self, request: cache_pb2.InvalidateRequest, context: grpc.aio.ServicerContext
    ) -> cache_pb2.InvalidateResponse:
        await self.router.authorize(request.scope, context)
        target = request.target
        try:
            validation.check_scope(request.scope, self.limits)
            if target == cache_pb2.InvalidateRequest.TARGET_TENANT:
                return await self._invalidate_everywhere(request, context)
            if target == cache_pb2.InvalidateRequest.TARGET_NAMESPACE:
                key = keys.namespace_key(request.scope)
            elif request.entry_id or target == cache_pb2.InvalidateRequest.TARGET_ENTRY:
                key = validation.check_entry_id(request.entry_id)
            else:
                raise validation.InvalidRequestError(
                    "target: set target (ENTRY, NAMESPACE or TENANT) or entry_id"
                )
        except validation.InvalidRequestError as e:
            await self._invalid(context, e)
        return await self.router.unary(
            key, lambda m, t: m.cache.Invalidate(request, timeout=t), context
        )

    async def _invalidate_everywhere(
        self, request: cache_pb2.InvalidateRequest, context: grpc.aio.ServicerContext
    ) -> cache_pb2.InvalidateResponse:
        members = [m for m in self.router.pool.members.values() if m.healthy]
        timeout = self.router._timeout(context)
        replies = await asyncio.gather(
            *(m.cache.Invalidate(request, timeout=timeout) for m in members), return_exceptions=True
        )
        errors = [r for r in replies if isinstance(r, BaseException)]
        if errors:
            first = errors[0]
            code = first.code() if isinstance(first, grpc.aio.AioRpcError) else None
            await context.abort(
                code or grpc.StatusCode.UNAVAILABLE,
                f"{len(errors)} of {len(members)} shards failed: {first}",
            )
        return cache_pb2.InvalidateResponse(removed=sum(r.removed for r in replies))

    async def Feedback(
        self, request: cache_pb2.FeedbackRequest, context: grpc.aio.ServicerContext
    ) -> cache_pb2.FeedbackResponse:
        await self.router.authorize(request.scope, context)
        try:
            validation.check_scope(request.scope, self.limits)
            key = validation.check_entry_id(request.entry_id)
        except validation.InvalidRequestError as e:
            await self._invalid(context, e)
        return await self.router.unary(
            key, lambda m, t: m.cache.Feedback(request, timeout=t), context
        )


_COUNTERS = (
    "entries",
    "namespaces",
    "bytes",
    "lookups",
    "hits",
    "exact_hits",
    "semantic_hits",
    "misses",
    "coalesced",
    "evictions",
    "wrong_hits",
    "redis_backlog",
    "reembed_pending",
    "reembedded",
    "redis_written_back",
)


class RouterAdminServicer(cache_pb2_grpc.AdminServicer):
    def __init__(self, router: Router) -> None:
        self.router = router

    async def Stats(
        self, request: cache_pb2.StatsRequest, context: grpc.aio.ServicerContext
    ) -> cache_pb2.StatsResponse:
        await self.router.authorize_operator(context)
        members = list(self.router.pool.members.values())
        timeout = min(self.router._timeout(context), 2.0)
        replies = await asyncio.gather(
            *(m.admin.Stats(request, timeout=timeout) for m in members), return_exceptions=True
        )
        response = cache_pb2.StatsResponse(total=cache_pb2.ShardStats(shard="total"))
        for member, reply in zip(members, replies, strict=True):
            if isinstance(reply, BaseException):
                response.shards.add(shard=member.id, address=member.address, reachable=False)
                continue
            (stats,) = reply.shards
            stats.address = member.address
            response.shards.append(stats)
            for name in _COUNTERS:
                setattr(response.total, name, getattr(response.total, name) + getattr(stats, name))
        response.total.reachable = all(s.reachable for s in response.shards)
        return response

    async def Ring(
        self, request: cache_pb2.RingRequest, context: grpc.aio.ServicerContext
    ) -> cache_pb2.RingResponse:
        await self.router.authorize_operator(context)
        pool = self.router.pool
        shares = pool.ring.shares()
        response = cache_pb2.RingResponse(vnodes=pool.ring.vnodes, load_factor=pool.load_factor)
        for member in pool.members.values():
            response.members.add(
                id=member.id,
                address=member.address,
                share=shares.get(member.id, 0.0),
                healthy=member.healthy,
                in_flight=member.in_flight,
            )
        if request.HasField("scope"):
            response.namespace = keys.namespace_key(request.scope)
            response.owners.extend(m.id for m in pool.order(response.namespace))
        return response
