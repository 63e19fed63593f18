"""Admission control: past `limit` calls in flight, a server answers RESOURCE_EXHAUSTED at
once instead of queueing the call until its deadline (overload then costs callers a quick,
retryable error, and the server's memory stays bounded by the limit).

Health checks and reflection are never refused: a busy server is not a dead one, and a
router that took overload for death would move its load to the next shard.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from prometheus_client import Counter

REFUSED = Counter(
    "semcache_overload_refused", "Calls refused with RESOURCE_EXHAUSTED: at the in-flight limit."
)
EXEMPT = ("/grpc.health.v1.Health/", "/grpc.reflection.")


class AdmissionControl(grpc.aio.ServerInterceptor):
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0

    def refusal(self) -> str | None:
        """Why one more call cannot be taken now (counted as refused), or None."""
        if self.in_flight < self.limit:
            return None
        REFUSED.inc()
        return f"over capacity: {self.limit} calls in flight here; retry after a backoff"

    async def _admit(self, context: grpc.aio.ServicerContext) -> None:
        if (reason := self.refusal()) is not None:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, reason)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or details.method.startswith(EXEMPT):
            return handler
        if handler.unary_unary is not None:
            return handler._replace(unary_unary=self._unary(handler.unary_unary))
        if handler.unary_stream is not None:
            return handler._replace(unary_stream=self._stream(handler.unary_stream))
        # Client streams (the mesh's internal links, semcache.runtime.mux) are long-lived and carry
        # many requests: counting one as a call in flight would say nothing. Their servicers
        # admit each request themselves (`refusal`, or the embedder's queue limit).
        return handler

    def _unary(self, behavior: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def admitted(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await self._admit(context)
            self.in_flight += 1
            try:
                return await behavior(request, context)
            finally:
                self.in_flight -= 1

        return admitted

    def _stream(
        self, behavior: Callable[..., AsyncIterator[Any]]
    ) -> Callable[..., AsyncIterator[Any]]:
        async def admitted(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            await self._admit(context)
            self.in_flight += 1
            try:
                async for message in behavior(request, context):
                    yield message
            finally:
                self.in_flight -= 1

        return admitted
