"""`semcache.v1.ShardLink`: a router's Lookup, Store and Complete calls to this shard as
messages on one stream (`semcache.runtime.mux`), answered by the same `ShardHandlers` as the
public servicer.

Each message runs exactly as its unary call would: same validation, same errors, the same
admission limit (one count per message), its own deadline (`timeout_seconds`), and a
cancellation from the router stops it as a cancelled call would.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from cache_svc.handlers import ShardHandlers
from cache_svc.metrics import TRACER
from semcache.runtime import tracing
from semcache.runtime.admission import AdmissionControl
from semcache.runtime.mux import serve_stream
from semcache.runtime.status import CallError
from semcache.runtime.validation import InvalidRequestError
from semcache.v1 import link_pb2, link_pb2_grpc

log = logging.getLogger(__name__)


def error_answer(request_id: int, error: CallError) -> link_pb2.ForwardResponse:
    metadata = [link_pb2.MetadataEntry(key=k, value=v) for k, v in error.trailing_metadata()]
    return link_pb2.ForwardResponse(
        id=request_id,
        error=link_pb2.ForwardError(
            code=error.code.value[0], message=error.message, trailing_metadata=metadata
        ),
    )


class ShardLinkServicer(link_pb2_grpc.ShardLinkServicer):
    def __init__(self, handlers: ShardHandlers) -> None:
        #: Which handler answers each kind of forwarded call.
        self.handlers: dict[str, Callable[[Any, float | None], Awaitable[Any]]] = {
            "lookup": handlers.lookup,
            "store": handlers.store,
            "complete": handlers.complete,
        }
        self.store = handlers.store
        self.export = handlers.export
        #: The server's in-flight limit, shared with its unary calls, and its stopping
        #: signal (both set once the server exists).
        self.admission: AdmissionControl | None = None
        self.stopping: asyncio.Event | None = None

    async def Forward(  # noqa: N802 - the proto's method name
        self, requests: AsyncIterator[link_pb2.ForwardRequest], context: grpc.aio.ServicerContext
    ) -> None:
        await serve_stream(
            requests,
            context,
            self.answer,
            closing=self.stopping,
            cancelled=lambda r: r.WhichOneof("call") == "cancel",
        )

    async def ExportPart(  # noqa: N802 - the proto's method name
        self, request: link_pb2.ExportPartRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[link_pb2.ExportPartResponse]:
        with TRACER.server_span("ShardLink/ExportPart", context.invocation_metadata()):
            try:
                async for batch in self.export(request.export, request.part, request.parts):
                    yield link_pb2.ExportPartResponse(batch=batch)
            except CallError as e:
                await e.abort(context)

    async def answer(self, request: link_pb2.ForwardRequest) -> link_pb2.ForwardResponse:
        kind = request.WhichOneof("call")
        if kind not in self.handlers:
            return error_answer(
                request.id,
                InvalidRequestError("call: one of lookup, store or complete is required"),
            )
        admission = self.admission
        if admission is not None and (reason := admission.refusal()) is not None:
            return error_answer(request.id, CallError(grpc.StatusCode.RESOURCE_EXHAUSTED, reason))
        timeout = request.timeout_seconds if request.timeout_seconds > 0 else None
        deadline = None if timeout is None else time.monotonic() + timeout
        if admission is not None:
            admission.in_flight += 1
        with TRACER.server_span(f"ShardLink/{kind.capitalize()}", request.trace_context):
            try:
                async with asyncio.timeout(timeout):
                    response: Any
                    if request.bulk and kind == "store":  # an import's: waits for the embedder
                        response = await self.store(request.store, deadline, bulk=True)
                    else:
                        response = await self.handlers[kind](getattr(request, kind), deadline)
            except CallError as e:
                return self._failed(request.id, e)
            except TimeoutError:
                error = CallError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
                return self._failed(request.id, error)
            except Exception:  # what a unary call would end with: UNKNOWN, never a dead stream
                log.exception("forwarded call failed", extra={"call": kind})
                error = CallError(grpc.StatusCode.UNKNOWN, "Unexpected error")
                return self._failed(request.id, error)
            finally:
                if admission is not None:
                    admission.in_flight -= 1
        return link_pb2.ForwardResponse(id=request.id, **{kind: response})

    @staticmethod
    def _failed(request_id: int, error: CallError) -> link_pb2.ForwardResponse:
        tracing.failed(error.code.value[0], error.message)
        return error_answer(request_id, error)
