"""semcache: a distributed semantic cache for LLM calls.

from semcache import Client, AsyncClient, SemcacheError   # the SDK (semcache.client)
"""

from __future__ import annotations

from typing import Any

_SDK = ("AsyncClient", "Client", "SemcacheError")
__all__ = list(_SDK)


def __getattr__(name: str) -> Any:
    # Lazy, so the services importing semcache.runtime.config & co. do not load the SDK.
    if name in _SDK:
        from semcache import client

        return getattr(client, name)
    raise AttributeError(f"module 'semcache' has no attribute {name!r}")
