"""A router's Lookup, Store and Complete calls to one shard, as messages on one
`ShardLink/Forward` stream (`semcache.runtime.mux`, protos/semcache/v1/link.proto).

Each call answers or fails exactly as the unary call would have: it raises the shard's
`CallError` (code, message, the upstream's status), which the router's failover reads as it
reads a failed direct call; a broken stream is UNAVAILABLE, a deadline DEADLINE_EXCEEDED,
and a caller who goes away cancels the shard's work on its request.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc

from semcache.metadata import status_code
from semcache.runtime import tracing
from semcache.runtime.mux import RenewingStream, StreamClosedError
from semcache.runtime.status import CallError
from semcache.v1 import cache_pb2, link_pb2, link_pb2_grpc

#: How long past its deadline a request waits for the shard's own DEADLINE_EXCEEDED answer.
ANSWER_GRACE_SECONDS = 0.5


class ShardLink:
    """One shard's link; its stream is renewed every few seconds (`semcache.runtime.mux`), before
    a shard's connection age limit could cut it."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = link_pb2_grpc.ShardLinkStub(channel)
        self._stream = RenewingStream(self._stub.Forward)

    async def lookup(
        self, request: cache_pb2.LookupRequest, seconds: float
    ) -> cache_pb2.LookupResponse:
        return await self._forward("lookup", request, seconds)

    async def store(
        self, request: cache_pb2.StoreRequest, seconds: float, *, bulk: bool = False
    ) -> cache_pb2.StoreResponse:
        """A Store; `bulk`: one of an Import's, which waits its turn for the embedder."""
        return await self._forward("store", request, seconds, bulk=bulk)

    async def complete(
        self, request: cache_pb2.CompleteRequest, seconds: float
    ) -> cache_pb2.CompleteResponse:
        return await self._forward("complete", request, seconds)

    async def _forward(self, kind: str, request: Any, seconds: float, bulk: bool = False) -> Any:
        """The shard's answer to `request` within `seconds`; `kind` names the message's
        `call` field."""
        forward = link_pb2.ForwardRequest(
            timeout_seconds=seconds, trace_context=tracing.carrier(), bulk=bulk, **{kind: request}
        )
        try:
            stream = self._stream.current()
            request_id, answer = stream.send(forward)
        except (StreamClosedError, grpc.aio.UsageError) as e:  # a closed or closing channel
            raise CallError(grpc.StatusCode.UNAVAILABLE, f"link to the shard: {e}") from e
        try:
            async with asyncio.timeout(seconds + ANSWER_GRACE_SECONDS):
                reply = await answer
        except StreamClosedError as e:
            raise CallError(grpc.StatusCode.UNAVAILABLE, f"link to the shard: {e}") from e
        except (TimeoutError, asyncio.CancelledError) as e:
            stream.post(link_pb2.ForwardRequest(id=request_id, cancel=link_pb2.ForwardCancel()))
            if isinstance(e, asyncio.CancelledError):
                raise
            raise CallError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded") from e
        if reply.HasField("error"):
            trailing = tuple((m.key, m.value) for m in reply.error.trailing_metadata)
            raise CallError.from_metadata(
                status_code(reply.error.code), reply.error.message, trailing
            )
        return getattr(reply, kind)

    async def export_part(
        self,
        request: cache_pb2.ExportRequest,
        part: int,
        parts: int,
        seconds: float | None,
        idle_seconds: float,
    ) -> AsyncIterator[cache_pb2.ExportResponse]:
        """The shard's part of an export (a call of its own: it streams) within `seconds`
        (None: no deadline), each batch within `idle_seconds` of the last (a frozen shard
        is UNAVAILABLE, not a hang); a failure is raised as the `CallError` it carries."""
        call = self._stub.ExportPart(
            link_pb2.ExportPartRequest(export=request, part=part, parts=parts),
            timeout=seconds,
            metadata=tracing.metadata(),
        )
        answers = aiter(call)
        try:
            while True:
                async with asyncio.timeout(idle_seconds):
                    answer = await anext(answers, None)
                if answer is None:
                    return
                yield answer.batch
        except grpc.aio.AioRpcError as e:
            raise CallError.from_rpc(e) from None
        except TimeoutError:
            raise CallError(
                grpc.StatusCode.UNAVAILABLE, f"the shard sent nothing for {idle_seconds:g} s"
            ) from None
        finally:
            call.cancel()

    def finish(self) -> None:
        """Requests on their way still get answers; nothing new is sent."""
        self._stream.finish()

    async def aclose(self) -> None:
        await self._stream.aclose()
