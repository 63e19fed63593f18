"""What a failed call raises: one hierarchy to catch, as httpx's is.

    SemcacheError                   every failure (code, details, attempts)
    ├── InvalidRequestError         the request is wrong (INVALID_ARGUMENT, OUT_OF_RANGE,
    │                               FAILED_PRECONDITION): fix it, do not retry
    ├── AuthenticationError         UNAUTHENTICATED: no or an unknown token
    ├── PermissionDeniedError       PERMISSION_DENIED: the token may not use that tenant
    ├── NotFoundError               NOT_FOUND
    ├── UpstreamError               the LLM upstream failed, not the cache; `upstream_status`
    │                               is its HTTP status (0: it did not answer)
    ├── UnavailableError            no server could serve it (UNAVAILABLE, CANCELLED by the
    │   │                           server, RESOURCE_EXHAUSTED): the cache is down or busy;
    │   │                           call the LLM yourself
    │   └── DeadlineExceededError   DEADLINE_EXCEEDED
    └── (anything else)             INTERNAL, UNKNOWN, ...: a bug worth reporting

`code` keeps the gRPC status for code written against the single `SemcacheError` class.
"""

from __future__ import annotations

import grpc

from semcache.metadata import UpstreamFailure


class SemcacheError(Exception):
    """A call failed. `code` is the gRPC status (`grpc.StatusCode`), `details` the server's
    (or gRPC's) message, `address` where the client sent it. `upstream` is True when the LLM
    upstream caused it, not the cache. `attempts` counts the tries made (more than 1 after
    retries)."""

    def __init__(
        self,
        code: grpc.StatusCode,
        details: str,
        *,
        address: str = "",
        upstream: bool = False,
        unreachable: bool = False,
        attempts: int = 1,
    ) -> None:
        self.code = code
        self.details = details
        self.address = address
        self.upstream = upstream
        self.attempts = attempts
        message = f"{code.name}: {details}"
        if unreachable:
            tries = f"; {attempts} attempts" if attempts > 1 else ""
            message = f"nothing answers at {address} ({message}{tries})"
        elif attempts > 1:
            message += f" (after {attempts} attempts)"
        super().__init__(message)


class InvalidRequestError(SemcacheError):
    """The request is wrong (the details say what); retrying it cannot help."""


class AuthenticationError(SemcacheError):
    """No token, or one the router does not know."""


class PermissionDeniedError(SemcacheError):
    """The token may not use the tenant the call names."""


class NotFoundError(SemcacheError):
    """What the call names does not exist."""


class UpstreamError(SemcacheError):
    """The LLM upstream failed (read-through calls); the cache itself is fine.
    `upstream_status` is the upstream's HTTP status, 0 when it did not answer; `failure`
    has the rest the upstream said (its error's type, code and param, its Retry-After)."""

    failure: UpstreamFailure = UpstreamFailure(0)

    @property
    def upstream_status(self) -> int:
        return self.failure.status


class UnavailableError(SemcacheError):
    """No server could serve the call (down, stopping, overloaded) after the retries: the
    cache is not there for this call, the LLM still is."""


class DeadlineExceededError(UnavailableError):
    """The call's deadline passed before an answer."""


_BY_CODE: dict[grpc.StatusCode, type[SemcacheError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidRequestError,
    grpc.StatusCode.OUT_OF_RANGE: InvalidRequestError,
    grpc.StatusCode.FAILED_PRECONDITION: InvalidRequestError,
    grpc.StatusCode.UNAUTHENTICATED: AuthenticationError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.CANCELLED: UnavailableError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
}


def is_upstream(error: grpc.aio.AioRpcError) -> bool:
    """The server marked the error as the LLM upstream's."""
    return UpstreamFailure.from_metadata(error.trailing_metadata()) is not None


def from_status(code: grpc.StatusCode, details: str, *, address: str = "") -> SemcacheError:
    """The SDK's exception for a status a server answered with inside a message (an
    Import entry's)."""
    return _BY_CODE.get(code, SemcacheError)(code, details, address=address)


def from_rpc_error(
    error: grpc.aio.AioRpcError, *, address: str, unreachable: bool, attempts: int
) -> SemcacheError:
    """The SDK's exception for a failed gRPC call."""
    code, failure = error.code(), UpstreamFailure.from_metadata(error.trailing_metadata())
    cls = UpstreamError if failure is not None else _BY_CODE.get(code, SemcacheError)
    raised = cls(
        code,
        error.details() or "",
        address=address,
        upstream=failure is not None,
        unreachable=unreachable,
        attempts=attempts,
    )
    if isinstance(raised, UpstreamError) and failure is not None:
        raised.failure = failure
    return raised
