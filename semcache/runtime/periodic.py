"""Background work repeated at an interval (heartbeats, registry reads), and how to stop it.

asyncio delivers a cancellation once, and code awaited inside a task can swallow it: Python
3.11's `asyncio.wait_for` returns the result of an inner call that finished in the same
turn of the loop as the cancellation (bpo-42130, fixed in 3.12), and every redis-py command
writes its socket through it. A loop that missed its cancellation runs on, and whoever
awaits it waits forever (a router's shutdown hung so in CI). So background loops are
stopped with `cancel_and_wait`, which cancels again until the task has ended, as anyio's
cancel scopes do.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

#: How often `cancel_and_wait` cancels a task that is still running.
RECANCEL_SECONDS = 0.05


async def cancel_and_wait(*tasks: asyncio.Future[Any]) -> None:
    """Cancels `tasks` and returns once every one has ended, cancelling again each still
    running every `RECANCEL_SECONDS`. Their exceptions are retrieved, not raised."""
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=RECANCEL_SECONDS)
    for task in tasks:
        if not task.cancelled():
            task.exception()  # retrieved: asyncio logs an exception nobody looked at


class Periodic:
    """Runs `step` every `interval` seconds in a task, from `start()` until `stop()`.

    A step that raises is logged and the next one runs anyway: one bad reply from Redis
    must not end a heartbeat or a watch for good.
    """

    def __init__(self, step: Callable[[], Awaitable[object]], interval: float, name: str) -> None:
        self.step = step
        self.interval = interval
        self.name = name
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.step()
            except Exception:
                log.exception("%s failed", self.name)
