"""A router's Lookup, Store and Complete calls to one shard, as messages on one
`ShardLink/Forward` stream (`semcache.runtime.mux`, protos/semcache/v1/link.proto).

`call` answers or fails exactly as the unary call would have (it raises the same
`grpc.aio.AioRpcError`: code, details, trailing metadata), so the router's failover reads it
unchanged: a broken stream is UNAVAILABLE, a deadline is DEADLINE_EXCEEDED, and a caller who
goes away cancels the shard's work on its request.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

from semcache.runtime.mux import RenewingStream, StreamClosedError, status_code
from semcache.v1 import link_pb2, link_pb2_grpc

#: How long past its deadline a request waits for the shard's own DEADLINE_EXCEEDED answer.
ANSWER_GRACE_SECONDS = 0.5


def rpc_error(
    code: grpc.StatusCode, details: str, trailing: tuple[tuple[str, str], ...] = ()
) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailing), details)


class ShardLink:
    """One shard's link; its stream is renewed every few seconds (`semcache.runtime.mux`), before
    a shard's connection age limit could cut it."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stream = RenewingStream(link_pb2_grpc.ShardLinkStub(channel).Forward)

    async def call(self, kind: str, request: Any, seconds: float) -> Any:
        """The shard's answer to `request` within `seconds`; `kind` is lookup, store or
        complete."""
        forward = link_pb2.ForwardRequest(timeout_seconds=seconds, **{kind: request})
        try:
            stream = self._stream.current()
            request_id, answer = stream.send(forward)
        except (StreamClosedError, grpc.aio.UsageError) as e:  # a closed or closing channel
            raise rpc_error(grpc.StatusCode.UNAVAILABLE, f"link to the shard: {e}") from e
        try:
            async with asyncio.timeout(seconds + ANSWER_GRACE_SECONDS):
                reply = await answer
        except StreamClosedError as e:
            raise rpc_error(grpc.StatusCode.UNAVAILABLE, f"link to the shard: {e}") from e
        except (TimeoutError, asyncio.CancelledError) as e:
            stream.post(link_pb2.ForwardRequest(id=request_id, cancel=link_pb2.ForwardCancel()))
            if isinstance(e, asyncio.CancelledError):
                raise
            raise rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded") from e
        if reply.HasField("error"):
            code = status_code(reply.error.code)
            trailing = tuple((m.key, m.value) for m in reply.error.trailing_metadata)
            raise rpc_error(code, reply.error.message, trailing)
        return getattr(reply, kind)

    def finish(self) -> None:
        """Requests on their way still get answers; nothing new is sent."""
        self._stream.finish()

    async def aclose(self) -> None:
        await self._stream.aclose()
