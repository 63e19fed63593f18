"""Single-flight: concurrent callers with the same key share one execution of the work."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    """`await flight.run(key, work)` runs `work()` once for all concurrent callers of `key`.

    The work runs as its own task: a caller that gives up (cancelled, deadline) does not
    cancel it for the others. An exception reaches every waiting caller and is not kept.
    """

    def __init__(self) -> None:
        self._inflight: dict[K, asyncio.Task[V]] = {}

    def __len__(self) -> int:
        return len(self._inflight)

    def in_flight_keys(self) -> list[K]:
        return list(self._inflight)

    def in_flight(self, key: K) -> bool:
        task = self._inflight.get(key)
        return task is not None and not task.done()

    async def run(self, key: K, work: Callable[[], Awaitable[V]]) -> tuple[V, bool]:
        """Returns (result, coalesced): coalesced is True for callers that joined a flight."""
        task = self._inflight.get(key)
        coalesced = task is not None and not task.done()
        if not coalesced:
            task = asyncio.ensure_future(work())
            self._inflight[key] = task
            task.add_done_callback(lambda done: self._forget(key, done))
        assert task is not None
        return await asyncio.shield(task), coalesced

    def _forget(self, key: K, task: asyncio.Task[V]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled():
            task.exception()  # retrieved: a failure nobody awaited is not logged as lost
