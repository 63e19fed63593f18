"""Shard membership in Redis: shards heartbeat their address with a TTL; routers read it.

Layout (the `{registry}` tag keeps it in one Redis Cluster slot, for its scripts):

    semcache:{registry}:member:<shard id>   the address routers dial (host:port), expiring
                                            after the TTL
    semcache:{registry}:members             set of registered shard ids (an index, so
                                            reading needs no SCAN)

Expiry is Redis's own (`SET ... EX`), so no clock is compared across machines. A shard that
stops cleanly deletes its key at once; one that dies vanishes when its key expires (and
routers' health checks take it out of the ring sooner). Readers prune ids whose key expired.
"""

from __future__ import annotations

import contextlib
import logging

from semcache.runtime import redisclient
from semcache.runtime.periodic import Periodic

log = logging.getLogger(__name__)

INDEX_KEY = "semcache:{registry}:members"
#: Removes from the set KEYS[1] each id ARGV[i] whose member key KEYS[i + 1] does not exist.
_PRUNE = """
for i, id in ipairs(ARGV) do
  if redis.call('EXISTS', KEYS[i + 1]) == 0 then
    redis.call('SREM', KEYS[1], id)
  end
end
return 0
"""
#: Deletes KEYS[1] and removes ARGV[2] from the set KEYS[2] only if KEYS[1] holds ARGV[1].
_DEREGISTER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('SREM', KEYS[2], ARGV[2])
  return 1
end
return 0
"""
_FAILURES = redisclient.FAILURES


def member_key(shard_id: str) -> str:
    return f"semcache:{{registry}}:member:{shard_id}"


def connect(url: str, *, cluster: bool = False, timeout: float = 1.0) -> redisclient.Client:
    return redisclient.connect(
        url, cluster=cluster, timeout=timeout, max_connections=4, decode_responses=True
    )


async def read_members(client: redisclient.Client) -> dict[str, str]:
    """The registered shards, id → address. Raises RedisError/OSError when Redis is away
    (callers await it within `redisclient.io`, so a connection closed under it is one)."""
    ids: list[str] = sorted(await client.smembers(INDEX_KEY))  # type: ignore[arg-type]
    if not ids:
        return {}
    addresses: list[str | None] = await client.mget([member_key(i) for i in ids])  # type: ignore[assignment]
    expired = [i for i, a in zip(ids, addresses, strict=True) if a is None]
    if expired:
        # Atomically, and only ids whose key is still gone: a shard may have re-registered
        # since the MGET.
        keys = [INDEX_KEY, *(member_key(i) for i in expired)]
        await client.eval(_PRUNE, len(keys), *keys, *expired)
    return {i: a for i, a in zip(ids, addresses, strict=True) if a is not None}


class Heartbeat:
    """Keeps one shard registered while it serves: refreshes its key every `ttl / 3`.

    Redis being away is logged and retried, never fatal: the shard keeps serving, and
    routers that already know it keep it (they do not drop members they cannot re-read).
    """

    def __init__(
        self, url: str, shard_id: str, address: str, ttl: float, *, cluster: bool = False
    ) -> None:
        self.shard_id = shard_id
        self.address = address
        self.ttl = ttl
        self._client = connect(url, cluster=cluster)
        self._beats = Periodic(self._beat, ttl / 3, "registry heartbeat")
        self.registered: bool | None = None  # None: not tried yet

    async def __aenter__(self) -> Heartbeat:
        await self._beat()
        self._beats.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _beat(self) -> None:
        try:
            with redisclient.closed_connections():
                async with self._client.pipeline(transaction=True) as pipe:
                    pipe.set(member_key(self.shard_id), self.address, px=int(self.ttl * 1000))
                    pipe.sadd(INDEX_KEY, self.shard_id)
                    await pipe.execute()
        except _FAILURES as e:
            if self.registered is not False:  # log the change, not every failed beat
                log.warning("registry heartbeat failed", extra={"error": repr(e)})
            self.registered = False
            return
        if not self.registered:
            log.info("registered", extra={"shard": self.shard_id, "address": self.address})
        self.registered = True

    async def aclose(self) -> None:
        """Stops the heartbeat and deregisters, so routers drop this shard at once."""
        await self._beats.stop()
        with contextlib.suppress(*_FAILURES), redisclient.closed_connections():
            # Only our own registration: another shard may have taken this id since.
            deleted = await self._client.eval(
                _DEREGISTER, 2, member_key(self.shard_id), INDEX_KEY, self.address, self.shard_id
            )
            log.info(
                "deregistered" if deleted else "registration held by another address",
                extra={"shard": self.shard_id},
            )
        await self._client.aclose()
