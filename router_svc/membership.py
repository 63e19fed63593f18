"""Where the router learns its shards: a static list, or the Redis registry, watched."""

from __future__ import annotations

import logging
import time

from router_svc.metrics import REGISTRY_READABLE
from router_svc.pool import ShardPool
from semcache.runtime import redisclient, registry
from semcache.runtime.periodic import Periodic

log = logging.getLogger(__name__)


def static_members(addresses: list[str]) -> dict[str, str]:
    """A static shard is known by its address: it is both its id and where to dial it."""
    return {address: address for address in addresses}


class RegistryWatcher:
    """Reads the registry every `interval` and makes the pool's membership match it.

    While Redis cannot be read the pool keeps the members it has (health checks still run),
    so a Redis outage does not empty the ring. A member missing from the registry leaves at
    once when it is unhealthy (a clean stop, a crash), but a healthy one stays for `grace`
    seconds: after an outage the registry can be read before shards have beaten again.
    """

    def __init__(
        self,
        url: str,
        pool: ShardPool,
        interval: float,
        grace: float = 10.0,
        *,
        cluster: bool = False,
    ) -> None:
        self.pool = pool
        self.grace = grace
        self._absent_since: dict[str, float] = {}
        self._client = registry.connect(url, cluster=cluster)
        self._reads = Periodic(self.sync, interval, "registry read")
        self.readable: bool | None = None  # None: not read yet

    async def __aenter__(self) -> RegistryWatcher:
        await self.sync()
        self._reads.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._reads.stop()
        await self._client.aclose()

    async def sync(self) -> None:
        try:
            members = await redisclient.io(registry.read_members(self._client))
        except redisclient.FAILURES as e:
            if self.readable is not False:
                log.warning(
                    "registry unreadable; keeping the shards known so far",
                    extra={"error": repr(e), "shards": len(self.pool.members)},
                )
            self.readable = False
            REGISTRY_READABLE.set(0)
            return
        if self.readable is False:
            log.info("registry readable again")
        self.readable = True
        REGISTRY_READABLE.set(1)
        now = time.monotonic()
        kept = {}
        for member in self.pool.members.values():
            if member.id in members:
                continue
            since = self._absent_since.setdefault(member.id, now)
            if member.healthy and now - since < self.grace:
                kept[member.id] = member.address
        await self.pool.update(members | kept)
        self._absent_since = {i: t for i, t in self._absent_since.items() if i in kept}
