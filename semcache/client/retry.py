"""When a failed call is tried again: one policy for unary calls and streams, as redis-py's
`Retry` with a backoff object is one policy for every command."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import grpc

from semcache.client.errors import is_upstream

#: Codes a retry may cure: no server answered, or a server stopped under the call.
RETRIED_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """A call that ends UNAVAILABLE (nothing listening, no shard could serve) or CANCELLED
    by the server (a router stopping under it; the SDK's own cancellations never come back as
    an error) is tried again up to `retries` more times, after a random delay in
    [0, min(max_backoff, backoff * 2**attempt)] (exponential backoff with full jitter). An
    error the LLM upstream caused is never retried (another try is the caller's decision),
    nor is an attempt that would start past the call's deadline. A stream is retried only
    before its first message."""

    retries: int = 3
    backoff: float = 0.1
    max_backoff: float = 2.0

    def __post_init__(self) -> None:
        if self.retries < 0 or self.backoff < 0 or self.max_backoff < 0:
            raise ValueError("retries, backoff and max_backoff must be >= 0")

    def delay(
        self, error: grpc.aio.AioRpcError, attempt: int, deadline: float | None
    ) -> float | None:
        """Seconds to wait before attempt `attempt + 1` (0-based), or None: do not retry."""
        if error.code() not in RETRIED_CODES or attempt >= self.retries or is_upstream(error):
            return None
        delay = random.uniform(0, min(self.max_backoff, self.backoff * 2**attempt))
        if deadline is not None and time.monotonic() + delay >= deadline:
            return None
        return delay
