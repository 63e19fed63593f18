"""`semcache.v1.SemanticCache` and `Admin` on a shard: thin adapters over `ShardHandlers`,
which take the caller's deadline and raise one `CallError` that ends the call."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import grpc

from cache_svc.handlers import ShardHandlers
from cache_svc.metrics import TRACER
from cache_svc.shard import Shard
from semcache.runtime.mux import IMPORT_WINDOW, serve_stream
from semcache.runtime.status import CallError
from semcache.v1 import cache_pb2, cache_pb2_grpc


def deadline(context: grpc.aio.ServicerContext) -> float | None:
    """The caller's deadline as a `time.monotonic()` instant, None without one."""
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


class CacheServicer(cache_pb2_grpc.SemanticCacheServicer):
    def __init__(self, handlers: ShardHandlers) -> None:
        self.handlers = handlers

    async def Lookup(
        self, request: cache_pb2.LookupRequest, context: grpc.aio.ServicerContext
    ) -> cache_pb2.LookupResponse:
        with TRACER.server_span("SemanticCache/Lookup", context.invocation_metadata()):
            try:
                return await self.handlers.lookup(request, deadline(context))
            except CallError as e:
                await e.abort(context)

    async def Store(
        self, request: cache_pb2.StoreRequest, context: grpc.aio.ServicerContext
    ) -> cache_pb2.StoreResponse:
        with TRACER.server_span("SemanticCache/Store", context.invocation_metadata()):
            try:
                return await self.handlers.store(request, deadline(context))
            except CallError as e:
                await e.abort(context)

    async def Complete(
        self, request: cache_pb2.CompleteRequest, context: grpc.aio.ServicerContext
    ) -> cache_pb2.CompleteResponse:
        with TRACER.server_span("SemanticCache/Complete", context.invocation_metadata()):
            try:
                return await self.handlers.complete(request, deadline(context))
            except CallError as e:
                await e.abort(context)

    async def StreamComplete(
        self, request: cache_pb2.CompleteRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[cache_pb2.CompleteChunk]:
        with TRACER.server_span("SemanticCache/StreamComplete", context.invocation_metadata()):
            try:
                async for chunk in self.handlers.stream_complete(request, deadline(context)):
                    yield chunk
            except CallError as e:
                await e.abort(context)

    async def Invalidate(
        self, request: cache_pb2.InvalidateRequest, context: grpc.aio.ServicerContext
    ) -> cache_pb2.InvalidateResponse:
        with TRACER.server_span("SemanticCache/Invalidate", context.invocation_metadata()):
            try:
                return await self.handlers.invalidate(request)
            except CallError as e:
                await e.abort(context)

    async def Import(
        self,
        requests: AsyncIterator[cache_pb2.ImportRequest],
        context: grpc.aio.ServicerContext,
    ) -> None:
        with TRACER.server_span("SemanticCache/Import", context.invocation_metadata()):
            await serve_stream(
                requests,
                context,
                lambda request: self.handlers.import_entry(request, deadline(context)),
                max_pending=IMPORT_WINDOW,
            )

    async def Export(
        self, request: cache_pb2.ExportRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[cache_pb2.ExportResponse]:
        with TRACER.server_span("SemanticCache/Export", context.invocation_metadata()):
            try:
                async for batch in self.handlers.export(request):
                    yield batch
            except CallError as e:
                await e.abort(context)

    async def Feedback(
        self, request: cache_pb2.FeedbackRequest, context: grpc.aio.ServicerContext
    ) -> cache_pb2.FeedbackResponse:
        with TRACER.server_span("SemanticCache/Feedback", context.invocation_metadata()):
            try:
                return await self.handlers.feedback(request)
            except CallError as e:
                await e.abort(context)


class AdminServicer(cache_pb2_grpc.AdminServicer):
    def __init__(self, shard: Shard, address: str = "") -> None:
        self.shard = shard
        self.address = address

    async def Stats(
        self, request: cache_pb2.StatsRequest, context: grpc.aio.ServicerContext
    ) -> cache_pb2.StatsResponse:
        stats: dict[str, Any] = self.shard.stats()
        shard = cache_pb2.ShardStats(
            shard=self.shard.shard_id, address=self.address, reachable=True, **stats
        )
        return cache_pb2.StatsResponse(shards=[shard], total=shard)

    async def Ring(
        self, request: cache_pb2.RingRequest, context: grpc.aio.ServicerContext
    ) -> cache_pb2.RingResponse:
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED,
            "a shard has no ring: ask the router (semcache.v1.Admin/Ring)",
        )
        raise AssertionError("unreachable: abort raises")
