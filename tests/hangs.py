"""Where a hung test waits: every asyncio task's chain of awaits, printed before it times out.

pytest-timeout's own dump shows threads only, and an asyncio test's main thread is always in
the event loop's `select`, which says nothing. A little before the timeout, this asks the
session's loop (thread-safely) to print each task's coroutine chain, so the report of a test
that hung shows the line each task is stuck on.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
from collections.abc import Iterator
from types import AsyncGeneratorType, FrameType
from typing import Any

#: Seconds before pytest-timeout's deadline at which the tasks are printed.
AHEAD_SECONDS = 10.0


def _frames(awaitable: Any) -> Iterator[FrameType]:
    """The frames of a coroutine (or async generator) and of what each one awaits in turn:
    `Task.print_stack` shows the outermost frame of a suspended coroutine only."""
    while awaitable is not None:
        frame = getattr(awaitable, "cr_frame", None) or getattr(awaitable, "ag_frame", None)
        if frame is not None:
            yield frame
        awaitable = getattr(awaitable, "cr_await", None) or getattr(awaitable, "ag_await", None)
        if awaitable is not None and not hasattr(awaitable, "cr_frame"):
            # An async generator's asend/athrow (an async context manager exiting) holds the
            # generator without exposing it.
            awaitable = next(
                (g for g in gc.get_referents(awaitable) if isinstance(g, AsyncGeneratorType)),
                awaitable,
            )


def print_tasks(loop: asyncio.AbstractEventLoop) -> None:
    """Prints every pending task of `loop` with its chain of awaits (call in the loop)."""
    out = sys.stderr
    tasks = asyncio.all_tasks(loop)
    print(f"\n===== {len(tasks)} asyncio tasks, a test about to time out =====", file=out)
    for task in tasks:
        print(f"--- {task.get_name()}: {task.get_coro()!r}", file=out)
        for frame in _frames(task.get_coro()):
            code = frame.f_code
            print(f"    {code.co_filename}:{frame.f_lineno} in {code.co_name}", file=out)
    out.flush()


class TaskDump:
    """A timer that prints the loop's tasks `AHEAD_SECONDS` before a test's timeout."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self._timer: threading.Timer | None = None

    def arm(self, timeout: float) -> None:
        self.disarm()
        if timeout <= AHEAD_SECONDS:
            return

        def fire() -> None:  # the loop is known once a test has used it: not yet at arm()
            loop = self.loop
            if loop is not None and not loop.is_closed():
                loop.call_soon_threadsafe(print_tasks, loop)

        self._timer = threading.Timer(timeout - AHEAD_SECONDS, fire)
        self._timer.daemon = True
        self._timer.start()

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
