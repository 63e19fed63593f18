"""Connections to Redis, standalone or Redis Cluster: the one place that knows the two apart.

Both clients take the same commands; what the callers must keep to on a cluster is that
every multi-key command, transaction and script touches keys of one hash slot (the
`{...}` tags in the key layouts of `cache_svc.store` and `semcache.runtime.registry`).

A cluster client follows MOVED and ASK redirections and, on a connection error (a master
that died), reloads the topology and retries with backoff; callers bound the whole call
with their own timeout, so a failover costs a bounded wait and the caller's fallback (the
store's backlog, the registry's "keep what is known").
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any, TypeAlias, TypeVar

import redis as redis_package
import redis.asyncio as redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError

#: What every Redis failure raises: the server's errors, a socket's, a timeout, and a
#: cluster client's own (no node reachable, a slot no master serves), which are not
#: RedisErrors. See also `closed_connections`.
FAILURES = (RedisError, RedisClusterException, OSError, TimeoutError)

T = TypeVar("T")
#: Where redis-py's code and asyncio's streams live (`redis.asyncio` is inside redis-py).
_REDIS, _ASYNCIO = (
    f"{Path(package.__file__).parent}{os.sep}" if package.__file__ else "//none//"
    for package in (redis_package, asyncio)
)


@contextlib.contextmanager
def closed_connections() -> Iterator[None]:
    """Around Redis calls: an asyncio connection closed under a write (a node killed under
    load) can let an AttributeError or TypeError escape from its own I/O code (its writer
    gone: redis-py #3546); that one is raised as the ConnectionError it is, so the
    caller's `except FAILURES` sees an outage. The same types raised anywhere else are a
    bug's, and stay what they are."""
    try:
        yield
    except (AttributeError, TypeError) as e:
        if not _closed_under_a_call(e):
            raise
        raise RedisConnectionError(f"connection closed under the call: {e}") from e


async def io(call: Awaitable[T]) -> T:
    """Awaits one Redis call (or a coroutine of several) within `closed_connections`."""
    with closed_connections():
        return await call


def _closed_under_a_call(error: BaseException) -> bool:
    """Whether `error` was raised in redis-py's or asyncio's own code while redis-py was
    on the stack: a TypeError from asyncio itself (a bad argument to `wait_for`) is ours."""
    frames = []
    tb = error.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame.f_code.co_filename)
        tb = tb.tb_next
    return (
        bool(frames)
        and frames[-1].startswith((_REDIS, _ASYNCIO))
        and any(f.startswith(_REDIS) for f in frames)
    )


Client: TypeAlias = "redis.Redis | RedisCluster"


def connect(
    url: str,
    *,
    cluster: bool = False,
    timeout: float = 1.0,
    max_connections: int = 64,
    decode_responses: bool = False,
) -> Client:
    """A client for `url`: with `cluster`, any node of a Redis Cluster (the others are
    found from it). `timeout` bounds each socket operation; `max_connections` is the limit
    per server (each cluster node, or the one standalone server), which callers keep to:
    a standalone pool waits up to `timeout` for a free connection, a cluster node refuses
    one past it."""
    if cluster:
        return RedisCluster.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            max_connections=max_connections,
            decode_responses=decode_responses,
            # A failover takes the cluster's node timeout plus an election: retried a few
            # times, each after a short backoff, within the caller's own bound.
            retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), retries=6),
        )
    # A blocking pool: a burst beyond its connections waits for one instead of failing at
    # once and passing for an outage.
    pool = redis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=timeout,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        decode_responses=decode_responses,
    )
    return redis.Redis.from_pool(pool)


async def primaries(client: Client) -> frozenset[str] | None:
    """The ids of a cluster's serving masters, None for a standalone server: a change
    means a failover happened, and with it maybe the loss of writes the old master had
    acknowledged but not yet replicated. Raises FAILURES."""
    if not isinstance(client, RedisCluster):
        return None
    nodes: dict[str, dict[str, Any]] = await client.cluster_nodes()
    serving = set()
    for info in nodes.values():
        flags = set(str(info["flags"]).split(","))
        if "master" in flags and "fail" not in flags and info["slots"]:
            serving.add(str(info["node_id"]))
    return frozenset(serving)
