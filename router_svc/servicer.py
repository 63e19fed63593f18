"""The router's `SemanticCache` and `Admin`: validate, pick the shard by namespace, forward.

Calls go to the namespace's owner on the ring with the caller's remaining deadline. When
that shard is UNAVAILABLE (down, not an upstream LLM error), or is ejected from the ring
while the call waits on it (frozen: it stopped answering health checks), the next shard in
the ring's order takes the call and hydrates the namespace from Redis. A stream fails over
only before its first message.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import grpc

from router_svc.metrics import REQUEST_SECONDS, REQUESTS, TRACER
from router_svc.pool import Member, ShardPool
from semcache import keys
from semcache.runtime import auth, tracing, validation
from semcache.runtime.mux import IMPORT_WINDOW, serve_stream
from semcache.runtime.status import CallError, import_failed
from semcache.v1 import cache_pb2, cache_pb2_grpc

T = TypeVar("T")

_AUTH_CODES = {
    auth.UnauthenticatedError: grpc.StatusCode.UNAUTHENTICATED,
    auth.PermissionDeniedError: grpc.StatusCode.PERMISSION_DENIED,
}


async def _rpc(call: Awaitable[T]) -> T:
    """A direct gRPC call to a shard, its failure read as the `CallError` it carries."""
    try:
        return await call
    except grpc.aio.AioRpcError as e:
        raise CallError.from_rpc(e) from None


class Router:
    """Auth, forwarding and failover; shared by both servicers."""

    def __init__(
        self, pool: ShardPool, default_timeout: float, tokens: auth.TokenMap | None = None
    ) -> None:
        self.pool = pool
        self.default_timeout = default_timeout
        self.tokens = tokens

    def authorize(self, scope: cache_pb2.Scope, context: grpc.aio.ServicerContext) -> None:
        """With tokens on, sets `scope.tenant` to the caller's tenant, or raises CallError
        (UNAUTHENTICATED without a known token, PERMISSION_DENIED naming another tenant)."""
        if self.tokens is None:
            return
        token = auth.bearer_token(context.invocation_metadata() or ())
        try:
            scope.tenant = self.tokens.tenant_of_request(token, scope.tenant)
        except auth.AuthError as e:
            raise CallError(_AUTH_CODES[type(e)], str(e)) from None

    def authorize_operator(self, context: grpc.aio.ServicerContext) -> None:
        """With tokens on, raises CallError unless the caller's token is an operator's."""
        if self.tokens is None:
            return
        try:
            self.tokens.require_operator(auth.bearer_token(context.invocation_metadata() or ()))
        except auth.AuthError as e:
            raise CallError(_AUTH_CODES[type(e)], str(e)) from None

    def timeout(self, context: grpc.aio.ServicerContext) -> float:
        """Seconds a forwarded call may take: what is left of the caller's deadline."""
        remaining = context.time_remaining()
        return self.default_timeout if remaining is None else max(remaining, 0.001)

    async def failover(
        self,
        key: str,
        attempt: Callable[[Member, float], Awaitable[T]],
        context: grpc.aio.ServicerContext,
    ) -> T:
        """`attempt(member, seconds)` on the key's owner, then down the ring's order while
        a shard is down (its own UNAVAILABLE, not an upstream's) or is ejected while the
        attempt waits on it; any other error ends the call as it is. One helper for unary
        calls and for opening a stream (an attempt then ends at its first message)."""
        last = "no healthy shard"
        for number, member in enumerate(self.pool.order(key), 1):
            member.in_flight += 1
            try:
                with TRACER.span(
                    "forward",
                    {"shard": member.id, "attempt": number},
                    kind=tracing.SpanKind.CLIENT,
                ):
                    return await _unless_ejected(member, attempt(member, self.timeout(context)))
            except CallError as e:
                if not e.server_down:
                    raise
                self.pool.record_failure(member, e.code.name)
                last = f"{member.id}: {e.message}"
            finally:
                member.in_flight -= 1
        raise CallError(grpc.StatusCode.UNAVAILABLE, f"no shard could serve: {last}")


async def _unless_ejected(member: Member, call: Awaitable[T]) -> T:
    """The call's result, or UNAVAILABLE as soon as the member is ejected from the ring
    (the call is then cancelled: the shard drops it, if it ever reads it)."""
    answer = asyncio.ensure_future(call)
    ejected = asyncio.ensure_future(member.ejected.wait())
    try:
        await asyncio.wait((answer, ejected), return_when=asyncio.FIRST_COMPLETED)
        if answer.done():
            return answer.result()
        raise CallError(
            grpc.StatusCode.UNAVAILABLE,
            f"{member.id} left the ring: {member.last_error or 'failing'}",
        )
    finally:
        for task in (answer, ejected):
            task.cancel()
        await asyncio.gather(answer, ejected, return_exceptions=True)


@contextlib.contextmanager
def _answered(method: str, context: grpc.aio.ServicerContext) -> Iterator[None]:
    """A public call's span, and what its caller saw of it in the metrics: its status code
    (an aborted call's, as it was set) and how long it took."""
    started = time.perf_counter()
    code = "OK"
    try:
        with TRACER.server_span(f"SemanticCache/{method}", context.invocation_metadata()):
            yield
    except (asyncio.CancelledError, GeneratorExit):  # the caller went away (a stream: closed)
        code = "CANCELLED"
        raise
    except BaseException:
        status = context.code()
        code = status.name if isinstance(status, grpc.StatusCode) else "UNKNOWN"
        raise
    finally:
        REQUESTS.labels(method, code).inc()
        REQUEST_SECONDS.labels(method).observe(time.perf_counter() - started)


def _add_route_time(info: cache_pb2.CacheInfo, started: float) -> None:
    total_ms = 1000 * (time.perf_counter() - started)
    info.timings.route_ms = max(0.0, total_ms - info.timings.total_ms)
    info.timings.total_ms = total_ms


class RouterCacheServicer(cache_pb2_grpc.SemanticCacheServicer):
    """Validate, pick the shard by namespace, forward; a `CallError` ends the call as the
    shard ended it (status, details, whether the upstream caused it)."""

    def __init__(self, router: Router, limits: validation.RequestLimits) -> None:
        self.router = router
        self.limits = limits

    async def _checked(
        self, request: Any, check: Callable[[Any, validation.RequestLimits], Any], context: Any
    ) -> str:
        """Authorizes and validates a request; returns its namespace key."""
        self.router.authorize(request.scope, context)
        check(request, self.limits)  # InvalidRequestError: a CallError
        return keys.namespace_key(request.scope)

    async def _read(
        self,
        method: str,
        request: Any,
        forward: Callable[[Member, float], Awaitable[T]],
        context: grpc.aio.ServicerContext,
    ) -> T:
        """Lookup and Complete: validate, forward to the namespace's shard, add route time."""
        started = time.perf_counter()
        with _answered(method, context):
            try:
                key = await self._checked(request, validation.check_lookup, context)
                response = await self.router.failover(key, forward, context)
            except CallError as e:
                await e.abort(context)
            tracing.annotate_cache(response.cache)  # type: ignore[attr-defined]
        _add_route_time(response.cache, started)  # type: ignore[attr-defined]
        return response

    async def Lookup(
        self, request: cache_pb2.LookupRequest, context: grpc.aio.ServicerContext
    ) -> cache_pb2.LookupResponse:
        return await self._read("Lookup", request, lambda m, t: m.link.lookup(request, t), context)

    async def Complete(
        self, request: cache_pb2.CompleteRequest, context: grpc.aio.ServicerContext
    ) -> cache_pb2.CompleteResponse:
        return await self._read(
            "Complete", request, lambda m, t: m.link.complete(request, t), context
        )

    async def Store(
        self, request: cache_pb2.StoreRequest, context: grpc.aio.ServicerContext
    ) -> cache_pb2.StoreResponse:
        started = time.perf_counter()
        with _answered("Store", context):
            try:
                key = await self._checked(request, validation.check_store, context)
                response = await self.router.failover(
                    key, lambda m, t: m.link.store(request, t), context
                )
            except CallError as e:
                await e.abort(context)
            tracing.annotate(namespace=response.namespace, shard=response.shard)
        response.timings.route_ms = max(
            0.0, 1000 * (time.perf_counter() - started) - response.timings.total_ms
        )
        return response

    async def StreamComplete(
        self, request: cache_pb2.CompleteRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[cache_pb2.CompleteChunk]:
        async def open_stream(
            member: Member, seconds: float
        ) -> tuple[Member, grpc.aio.UnaryStreamCall, cache_pb2.CompleteChunk | None]:
            # Until its first message the stream can still go elsewhere (failover): not if
            # the shard froze (ejected) meanwhile.
            call = member.cache.StreamComplete(
                request, timeout=seconds, metadata=tracing.metadata()
            )
            try:
                return member, call, await _rpc(anext(aiter(call), None))
            except BaseException:
                call.cancel()  # ended already, or left behind on an ejected shard
                raise

        # gRPC drives the generator from the call's one task: the span stays current.
        with _answered("StreamComplete", context):
            try:
                key = await self._checked(request, validation.check_lookup, context)
                member, call, first = await self.router.failover(key, open_stream, context)
                if first is None:
                    return
                member.in_flight += 1
                try:
                    yield first
                    async for chunk in _rpc_stream(call):
                        yield chunk
                finally:
                    member.in_flight -= 1
            except CallError as e:
                await e.abort(context)

    async def Invalidate(
        self, request: cache_pb2.InvalidateRequest, context: grpc.aio.ServicerContext
    ) -> cache_pb2.InvalidateResponse:
        with _answered("Invalidate", context):
            try:
                self.router.authorize(request.scope, context)
                target = validation.check_invalidate(request, self.limits)
                if target == cache_pb2.InvalidateRequest.TARGET_TENANT:
                    return await self._invalidate_everywhere(request, context)
                if target == cache_pb2.InvalidateRequest.TARGET_NAMESPACE:
                    key = keys.namespace_key(request.scope)
                else:
                    key = validation.check_entry_id(request.entry_id)
                return await self.router.failover(
                    key, lambda m, t: _rpc(m.cache.Invalidate(request, timeout=t)), context
                )
            except CallError as e:
                await e.abort(context)

    async def _invalidate_everywhere(
        self, request: cache_pb2.InvalidateRequest, context: grpc.aio.ServicerContext
    ) -> cache_pb2.InvalidateResponse:
        members = [m for m in self.router.pool.members.values() if m.healthy]
        timeout = self.router.timeout(context)
        replies = await asyncio.gather(
            *(_rpc(m.cache.Invalidate(request, timeout=timeout)) for m in members),
            return_exceptions=True,
        )
        errors = [r for r in replies if isinstance(r, BaseException)]
        if errors:
            first = errors[0]
            code = first.code if isinstance(first, CallError) else grpc.StatusCode.UNAVAILABLE
            raise CallError(code, f"{len(errors)} of {len(members)} shards failed: {first}")
        return cache_pb2.InvalidateResponse(
            removed=sum(r.removed for r in replies if not isinstance(r, BaseException))
        )

    async def Import(
        self,
        requests: AsyncIterator[cache_pb2.ImportRequest],
        context: grpc.aio.ServicerContext,
    ) -> None:
        async def store(request: cache_pb2.ImportRequest) -> cache_pb2.ImportResponse:
            try:
                key = await self._checked(request.store, validation.check_store, context)
                response = await self.router.failover(
                    key, lambda m, t: m.link.store(request.store, t, bulk=True), context
                )
            except CallError as e:
                return import_failed(request.id, e)
            return cache_pb2.ImportResponse(id=request.id, store=response)

        with _answered("Import", context):
            await serve_stream(requests, context, store, max_pending=IMPORT_WINDOW)

    async def Export(
        self, request: cache_pb2.ExportRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[cache_pb2.ExportResponse]:
        with _answered("Export", context):
            try:
                validation.check_export(request, self.limits)
                if request.all_tenants:
                    self.router.authorize_operator(context)
                else:
                    scope = cache_pb2.Scope(tenant=request.tenant)
                    self.router.authorize(scope, context)
                    request.tenant = scope.tenant
                members = [m for m in self.router.pool.members.values() if m.healthy]
                if not members:
                    raise CallError(grpc.StatusCode.UNAVAILABLE, "no healthy shard to export from")
                # A stream may take long; a shard may not go quiet for long.
                remaining, idle = context.time_remaining(), self.router.default_timeout
                parts = [
                    m.link.export_part(request, i, len(members), remaining, idle)
                    for i, m in enumerate(members)
                ]
                async for batch in _merged(parts):
                    yield batch
            except CallError as e:
                await e.abort(context)

    async def Feedback(
        self, request: cache_pb2.FeedbackRequest, context: grpc.aio.ServicerContext
    ) -> cache_pb2.FeedbackResponse:
        with _answered("Feedback", context):
            try:
                self.router.authorize(request.scope, context)
                key = validation.check_feedback(request, self.limits)
                return await self.router.failover(
                    key, lambda m, t: _rpc(m.cache.Feedback(request, timeout=t)), context
                )
            except CallError as e:
                await e.abort(context)


async def _merged(streams: list[AsyncIterator[T]]) -> AsyncIterator[T]:
    """The streams' messages as they come, read side by side (a few ahead of the caller at
    most); the first failure ends it, and the others are stopped."""
    queue: asyncio.Queue[tuple[T | None, BaseException | None]] = asyncio.Queue(maxsize=4)

    async def pump(stream: AsyncIterator[T]) -> None:
        try:
            async for message in stream:
                await queue.put((message, None))
            await queue.put((None, None))  # this one is done
        except Exception as e:  # handed to the reader, which raises it
            await queue.put((None, e))

    pumps = [asyncio.create_task(pump(s)) for s in streams]
    try:
        running = len(pumps)
        while running:
            message, error = await queue.get()
            if error is not None:
                raise error
            if message is None:
                running -= 1
            else:
                yield message
    finally:
        for task in pumps:
            task.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)


async def _as_operator(router: Router, context: grpc.aio.ServicerContext) -> None:
    try:
        router.authorize_operator(context)
    except CallError as e:
        await e.abort(context)


async def _rpc_stream(call: grpc.aio.UnaryStreamCall) -> AsyncIterator[Any]:
    """A shard's stream, its failure read as the `CallError` it carries."""
    try:
        async for message in call:
            yield message
    except grpc.aio.AioRpcError as e:
        raise CallError.from_rpc(e) from None


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
        await _as_operator(self.router, context)
        members = list(self.router.pool.members.values())
        timeout = min(self.router.timeout(context), 2.0)
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
        await _as_operator(self.router, context)
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
