"""The Python client SDK: `AsyncClient` (asyncio) and `Client` (blocking), one implementation.

    from semcache import AsyncClient, Client

    async with AsyncClient("127.0.0.1:50051", tenant="acme") as cache:
        done = await cache.complete("How do I reset my password?", model="gpt-4o")
        print(done.text, done.hit, done.cache.similarity)

    with Client("127.0.0.1:50051", tenant="acme") as cache:      # same methods, blocking
        found = cache.lookup("enable 2FA on GitHub", model="gpt-4o")
        if not found.hit:
            cache.store("enable 2FA on GitHub", "...your LLM's answer...", model="gpt-4o")

Every call takes the scope as keywords (see `ScopeArgs`): `tenant` (the client's by
default), `model`, `system`, `history` and `params`. Results are plain frozen dataclasses,
never protobuf messages. Every failure is a `SemcacheError`, of a subclass that says what
to do about it (`errors`); retries follow one `RetryPolicy` for unary calls and streams.

The modules: `options` (what both clients take), `requests` (keywords -> messages),
`results`, `errors`, `retry`, `aio` (AsyncClient), `streams`, `sync` (Client).
"""

from semcache.client.aio import AsyncClient
from semcache.client.errors import (
    AuthenticationError,
    DeadlineExceededError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    SemcacheError,
    UnavailableError,
    UpstreamError,
)
from semcache.client.options import DEFAULT_ADDRESS, ClientOptions
from semcache.client.requests import ScopeArgs, scope_from_messages
from semcache.client.results import (
    CacheInfo,
    Completion,
    Ring,
    RingMember,
    ShardStats,
    Stats,
    Stored,
    Timings,
    Usage,
)
from semcache.client.retry import RetryPolicy
from semcache.client.streams import AsyncCompletionStream, CompletionStream
from semcache.client.sync import Client

__all__ = [
    "DEFAULT_ADDRESS",
    "AsyncClient",
    "AsyncCompletionStream",
    "AuthenticationError",
    "CacheInfo",
    "Client",
    "ClientOptions",
    "Completion",
    "CompletionStream",
    "DeadlineExceededError",
    "InvalidRequestError",
    "NotFoundError",
    "PermissionDeniedError",
    "RetryPolicy",
    "Ring",
    "RingMember",
    "ScopeArgs",
    "SemcacheError",
    "ShardStats",
    "Stats",
    "Stored",
    "Timings",
    "UnavailableError",
    "UpstreamError",
    "Usage",
    "scope_from_messages",
]
