"""How a call fails, once for every hop: `CallError` (a gRPC status, its message and, when
the LLM upstream failed, the upstream's HTTP status) and the maps between gRPC and HTTP.

Validation raises it (`validation.InvalidRequestError` is one) and so do a shard's
handlers; the shard's servicer and its ShardLink end a call or a forwarded message with it,
the router reads it back from either and fails over or passes it on, and the HTTP front
turns it into an OpenAI-style error. Over the wire it travels as the status,
details and trailing metadata (`semcache.metadata`) every gRPC client sees.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NoReturn

import grpc

from semcache.metadata import UpstreamFailure
from semcache.runtime import tracing
from semcache.v1 import cache_pb2

#: An upstream's HTTP status -> the gRPC status the call ends with (anything else, and no
#: answer at all: UNAVAILABLE).
_GRPC_FOR_HTTP = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    408: grpc.StatusCode.DEADLINE_EXCEEDED,
    409: grpc.StatusCode.ABORTED,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
}
#: gRPC status -> (HTTP status, OpenAI error type) for the HTTP front.
_HTTP_FOR_GRPC = {
    grpc.StatusCode.INVALID_ARGUMENT: (400, "invalid_request_error"),
    grpc.StatusCode.UNAUTHENTICATED: (401, "authentication_error"),
    grpc.StatusCode.PERMISSION_DENIED: (403, "permission_error"),
    grpc.StatusCode.NOT_FOUND: (404, "not_found_error"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (429, "rate_limit_error"),
    grpc.StatusCode.DEADLINE_EXCEEDED: (504, "timeout_error"),
    grpc.StatusCode.UNAVAILABLE: (503, "service_unavailable"),
}


def grpc_for_http(status: int) -> grpc.StatusCode:
    """The gRPC status for an upstream HTTP status (0: no answer at all)."""
    return _GRPC_FOR_HTTP.get(status, grpc.StatusCode.UNAVAILABLE)


class CallError(Exception):
    """A call's failure: `code`, `message`, and `upstream` when the LLM upstream caused it
    (its HTTP status, 0 when it did not answer, and what else it said), None when the
    cache did."""

    def __init__(
        self, code: grpc.StatusCode, message: str, *, upstream: UpstreamFailure | None = None
    ) -> None:
        super().__init__(message)
        self.code, self.message, self.upstream = code, message, upstream

    @classmethod
    def from_upstream(cls, failure: UpstreamFailure, message: str) -> CallError:
        return cls(grpc_for_http(failure.status), message, upstream=failure)

    @classmethod
    def from_metadata(
        cls, code: grpc.StatusCode, message: str, trailing: Sequence[tuple[str, str | bytes]]
    ) -> CallError:
        """Read back from a call's status and trailing metadata (`trailing_metadata`)."""
        return cls(code, message, upstream=UpstreamFailure.from_metadata(trailing))

    @classmethod
    def from_rpc(cls, error: grpc.aio.AioRpcError) -> CallError:
        return cls.from_metadata(
            error.code(), error.details() or "", tuple(error.trailing_metadata() or ())
        )

    @property
    def upstream_status(self) -> int | None:
        return None if self.upstream is None else self.upstream.status

    @property
    def server_down(self) -> bool:
        """UNAVAILABLE from the cache itself: another server may serve the call (an
        upstream's UNAVAILABLE is the LLM's, and the same anywhere)."""
        return self.code == grpc.StatusCode.UNAVAILABLE and self.upstream is None

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        return () if self.upstream is None else self.upstream.metadata()

    def http(self) -> tuple[int, str]:
        """(HTTP status, OpenAI error type): an upstream's error keeps the upstream's status;
        one that did not answer is a 502."""
        if self.upstream_status:
            return self.upstream_status, "upstream_error"
        if self.upstream_status == 0:
            return 502, "upstream_error"
        return _HTTP_FOR_GRPC.get(self.code, (500, "api_error"))

    async def abort(self, context: grpc.aio.ServicerContext) -> NoReturn:
        """Ends a gRPC call with this error: status, details, trailing metadata."""
        tracing.failed(self.code.value[0], self.message)
        context.set_trailing_metadata(self.trailing_metadata())
        await context.abort(self.code, self.message)
        raise AssertionError("unreachable: abort raises")


def import_failed(request_id: int, error: CallError) -> cache_pb2.ImportResponse:
    """Import's answer to a request that was not stored: the status Store would end with."""
    return cache_pb2.ImportResponse(
        id=request_id,
        error=cache_pb2.ImportFailure(code=error.code.value[0], message=error.message),
    )
