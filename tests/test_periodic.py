"""Background loops stop even when code they await swallowed the cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from semcache.runtime.periodic import Periodic


async def swallowing(answer: asyncio.Future[None]) -> None:
    """What Python 3.11's `asyncio.wait_for` does, spelled out (3.12 no longer does it):
    an answer that came in the same turn as the cancellation is returned, the
    cancellation dropped."""
    try:
        await asyncio.shield(answer)
    except asyncio.CancelledError:
        if not answer.done():
            raise


@pytest.mark.parametrize(
    "awaits",
    [swallowing, lambda answer: asyncio.wait_for(answer, 10)],
    ids=["spelled-out", "asyncio.wait_for"],
)
async def test_a_loop_whose_step_swallowed_the_cancellation_still_stops(
    awaits: Callable[[asyncio.Future[None]], Awaitable[None]],
) -> None:
    """Every redis-py command writes through `asyncio.wait_for`: a heartbeat or registry
    read stopped as its reply came in lost its one cancellation, and a stop that
    cancelled once waited forever."""
    answered: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    started = asyncio.Event()
    steps = 0

    async def step() -> None:
        nonlocal steps
        steps += 1
        started.set()
        if steps == 1:
            await awaits(answered)

    loop = Periodic(step, 0, "swallowing")
    loop.start()
    await started.wait()
    answered.set_result(None)  # the answer and the cancellation in one turn of the loop
    stopping = asyncio.ensure_future(loop.stop())
    done, _ = await asyncio.wait({stopping}, timeout=5)  # (a timeout would cancel it again)
    stopping.cancel()
    assert done, "stop() is waiting for a loop that lost its cancellation"
