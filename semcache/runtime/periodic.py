"""Background work repeated at an interval: heartbeats, registry reads."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


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
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.step()
            except Exception:
                log.exception("%s failed", self.name)
