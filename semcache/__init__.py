"""semcache: a distributed semantic cache for LLM calls.

    from semcache import Client, AsyncClient, SemcacheError   # the SDK (semcache.client)

The packages, by who uses them: `semcache.client` (the SDK) and `semcache.cli`, for users;
`semcache.runtime`, what the three services share; `semcache.quality`, the hit policy;
`semcache.evaluation` and `semcache.dev`, tooling. `keys`, `channel`, `metadata`, `tls`
and the generated `v1` stubs are the wire contract every side shares.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AsyncClient",
    "Client",
    "InvalidRequestError",
    "RetryPolicy",
    "SemcacheError",
    "UnavailableError",
    "UpstreamError",
]


def __getattr__(name: str) -> Any:
    # Lazy, so the services importing semcache.runtime & co. do not load the SDK.
    if name in __all__:
        from semcache import client

        return getattr(client, name)
    raise AttributeError(f"module 'semcache' has no attribute {name!r}")
