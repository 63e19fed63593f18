"""A registered shard lets go of namespaces the ring has given to another shard.

Routers send a namespace to its first healthy owner on the ring, or to the next one while
that owner is down. When membership changes (a shard joins, or an owner comes back after a
failover) the namespaces a shard held for someone else would stay in its memory: stale, as
invalidations go to the owner only, and, were they evicted for capacity, deleted from Redis
under the owner. So on every change of the registry's membership a shard releases, from
memory only, each namespace whose first owner on the new ring is another shard.

Reading ownership from the registry alone is safe: it may list fewer shards than the
routers use (one not yet beaten again after a Redis outage) or more (one the routers found
unhealthy). With fewer, a shard owns a superset of what it owns on the full ring, so it
never releases a namespace it owns; with more, it may release one the routers still send it,
which then costs a hydration from Redis, nothing more.
"""

from __future__ import annotations

import logging

from cache_svc.shard import Shard
from semcache.runtime import redisclient, registry
from semcache.runtime.periodic import Periodic
from semcache.runtime.ring import HashRing

log = logging.getLogger(__name__)


class OwnershipWatcher:
    """Reads the registry every `interval`; on a change of membership, releases what the
    shard `shard_id` no longer owns. `vnodes` must be the routers' (`--vnodes`)."""

    def __init__(
        self,
        url: str,
        shard_id: str,
        shard: Shard,
        vnodes: int,
        interval: float = 1.0,
        *,
        cluster: bool = False,
    ) -> None:
        self.shard_id = shard_id
        self.shard = shard
        self.vnodes = vnodes
        self._client = registry.connect(url, cluster=cluster)
        self._members: frozenset[str] | None = None
        self._checks = Periodic(self.check, interval, "ownership check")

    async def __aenter__(self) -> OwnershipWatcher:
        await self.check()
        self._checks.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._checks.stop()
        await self._client.aclose()

    async def check(self) -> int:
        """One read of the registry; the namespaces released (0 when nothing changed)."""
        try:
            members = frozenset(await redisclient.io(registry.read_members(self._client)))
        except redisclient.FAILURES:
            return 0  # keep everything until the registry can be read again
        if members == self._members:
            return 0
        self._members = members
        if self.shard_id not in members:
            return 0  # not (yet, or no longer) on the ring: owns nothing to compare
        ring = HashRing(sorted(members), self.vnodes)
        released = self.shard.release(lambda key: ring.owner(key) == self.shard_id)
        if released:
            log.info(
                "released namespaces owned by other shards",
                extra={"namespaces": released, "shards": len(members)},
            )
        return released
