"""`semcache.v1.ShardLink`: a router's Lookup, Store and Complete calls to this shard as
messages on one stream (`semcache.runtime.mux`), answered by the shard's own `CacheServicer`.

Each message runs exactly as its unary call would: same validation, same errors, the same
admission limit (one count per message), its own deadline (`timeout_seconds`), and a
cancellation from the router stops it as a cancelled call would.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, NoReturn

import grpc

from cache_svc.servicer import CacheServicer
from semcache.runtime.admission import AdmissionControl
from semcache.runtime.mux import serve_stream
from semcache.v1 import link_pb2, link_pb2_grpc

log = logging.getLogger(__name__)

#: Which `CacheServicer` method answers each kind of forwarded call.
METHODS = {"lookup": "Lookup", "store": "Store", "complete": "Complete"}


class CallEndedError(Exception):
    """A forwarded call the servicer ended with an error status."""

    def __init__(
        self, code: grpc.StatusCode, message: str, trailing: Sequence[tuple[str, str]] = ()
    ) -> None:
        super().__init__(message)
        self.code, self.message, self.trailing = code, message, tuple(trailing)


class MessageContext:
    """What `CacheServicer` uses of a `grpc.aio.ServicerContext`, for one forwarded message:
    `abort` ends the message with an error answer; trailing metadata rides along with it;
    `time_remaining` is what is left of the message's own deadline."""

    def __init__(self, timeout: float | None = None) -> None:
        self.trailing: tuple[tuple[str, str], ...] = ()
        self._deadline = None if timeout is None else time.monotonic() + timeout

    def time_remaining(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    def set_trailing_metadata(self, metadata: Sequence[tuple[str, str]]) -> None:
        self.trailing = tuple(metadata)

    async def abort(self, code: grpc.StatusCode, details: str = "") -> NoReturn:
        raise CallEndedError(code, details, self.trailing)


def error(
    request_id: int, code: grpc.StatusCode, message: str, trailing: Sequence[tuple[str, str]] = ()
) -> link_pb2.ForwardResponse:
    metadata = [link_pb2.MetadataEntry(key=k, value=v) for k, v in trailing]
    return link_pb2.ForwardResponse(
        id=request_id,
        error=link_pb2.ForwardError(
            code=code.value[0], message=message, trailing_metadata=metadata
        ),
    )


class ShardLinkServicer(link_pb2_grpc.ShardLinkServicer):
    def __init__(self, cache: CacheServicer) -> None:
        self.cache = cache
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

    async def answer(self, request: link_pb2.ForwardRequest) -> link_pb2.ForwardResponse:
        kind = request.WhichOneof("call")
        if kind not in METHODS:
            return error(
                request.id,
                grpc.StatusCode.INVALID_ARGUMENT,
                "call: one of lookup, store or complete is required",
            )
        admission = self.admission
        if admission is not None and (reason := admission.refusal()) is not None:
            return error(request.id, grpc.StatusCode.RESOURCE_EXHAUSTED, reason)
        timeout = request.timeout_seconds if request.timeout_seconds > 0 else None
        method = getattr(self.cache, METHODS[kind])
        if admission is not None:
            admission.in_flight += 1
        try:
            async with asyncio.timeout(timeout):
                response: Any = await method(getattr(request, kind), MessageContext(timeout))
        except CallEndedError as e:
            return error(request.id, e.code, e.message, e.trailing)
        except TimeoutError:
            return error(request.id, grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
        except Exception:  # what a unary call would end with: UNKNOWN, never a dead stream
            log.exception("forwarded call failed", extra={"call": kind})
            return error(request.id, grpc.StatusCode.UNKNOWN, "Unexpected error")
        finally:
            if admission is not None:
                admission.in_flight -= 1
        return link_pb2.ForwardResponse(id=request.id, **{kind: response})
