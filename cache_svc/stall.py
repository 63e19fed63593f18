"""A shard that stalled lets go of the namespaces routers may have given to another meanwhile.

A shard frozen for longer than a router takes to eject it (a GC or CPU stall, SIGSTOP, a
host paused: two failed health checks, about a second with the default settings) has had
its namespaces served by the next shard on the ring: entries stored there, invalidations
applied there, all written through to Redis. Once it answers health checks again, routers
send those namespaces back to it, and its memory would miss the new entries and still
serve the invalidated ones. The registry does not show the freeze (the shard's key outlives
a short one), so `OwnershipWatcher` cannot either.

So the shard watches its own clock: a tick that comes more than `threshold` seconds late
means the whole process stood still. Then it

1. says NOT_SERVING to health checks (routers keep its namespaces on the other shards) and
   drops from memory (never from Redis) every namespace it held, each to hydrate again on
   its next call; what it must keep for now (a call in flight, writes not in Redis yet, as
   right after the stall its Redis calls may have timed out: `Shard.drop_copies`) is
   dropped on later ticks, for up to RETRY_SECONDS;
2. after SETTLE_SECONDS says SERVING again: routers send it its namespaces back;
3. SETTLE_SECONDS later drops once more what it hydrated since: a call the other shard was
   still answering when the routers switched back (an LLM call) may have stored its entry
   after this shard read the namespace from Redis. An entry stored later still (a call
   longer than that) is in Redis but unseen by this shard until the namespace hydrates again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from cache_svc import metrics
from cache_svc.shard import Shard
from semcache.runtime.periodic import Periodic

log = logging.getLogger(__name__)

#: How often the clock is read; a stall shorter than the threshold goes unseen.
TICK_SECONDS = 0.1
#: How long namespaces that had to be kept after a stall are retried.
RETRY_SECONDS = 10.0
#: Out of the ring this long after a stall, and the second drop this long after that.
SETTLE_SECONDS = 1.0


class StallWatch:
    """`serving(False)` while stale copies may be held after a stall, `serving(True)` after."""

    def __init__(
        self, shard: Shard, threshold: float, serving: Callable[[bool], Awaitable[None]]
    ) -> None:
        self.shard = shard
        self.threshold = threshold
        self.serving = serving
        self.stalls = 0
        self._last = time.monotonic()
        self._pending: set[str] = set()
        self._retry_until = 0.0
        #: The next step after a stall, and when: "serve" (step 2), "drop" (step 3).
        self._next: tuple[str, float] | None = None
        self._ticks = Periodic(self.tick, TICK_SECONDS, "stall watch")

    def start(self) -> None:
        self._last = time.monotonic()
        self._ticks.start()

    async def stop(self) -> None:
        await self._ticks.stop()

    async def tick(self) -> None:
        now, previous = time.monotonic(), self._last
        self._last = now
        late = now - previous - TICK_SECONDS
        if late > self.threshold:
            self.stalls += 1
            metrics.STALLS.inc()
            log.warning(
                "the shard stood still; dropping its namespaces from memory",
                extra={"seconds": round(late, 3)},
            )
            await self.serving(False)
            # What the stall itself loaded (a big hydration holding the loop) is fresh.
            self._drop(previous, now)
            self._next = ("serve", now + SETTLE_SECONDS)
        if self._pending:
            self._pending = self.shard.drop_copies(self._pending)
            if self._pending and now >= self._retry_until:
                log.warning(
                    "namespaces kept after a stall", extra={"namespaces": len(self._pending)}
                )
                self._pending = set()
        if self._next is None or self._pending or now < self._next[1]:
            return
        if self._next[0] == "serve":
            await self.serving(True)
            self._next = ("drop", now + SETTLE_SECONDS)
        else:
            self._drop(now, now)
            self._next = None
            log.info("after a stall: dropped what was hydrated while the routers switched back")

    def _drop(self, loaded_before: float, now: float) -> None:
        self._pending = self.shard.drop_copies(self.shard.loaded_before(loaded_before))
        self._retry_until = now + RETRY_SECONDS
