"""The stall watch's steps, on a clock the test moves and a shard that records what it drops."""

from __future__ import annotations

import pytest

from cache_svc import stall
from cache_svc.stall import SETTLE_SECONDS, TICK_SECONDS, StallWatch


class FakeShard:
    def __init__(self, loaded: dict[str, float]) -> None:
        self.loaded = loaded  # namespace -> when it was loaded
        self.busy: set[str] = set()  # kept by drop_copies (a call in flight)
        self.dropped: list[str] = []

    def loaded_before(self, instant: float) -> set[str]:
        return {k for k, t in self.loaded.items() if t < instant}

    def drop_copies(self, keys: set[str]) -> set[str]:
        kept = keys & self.busy
        for key in sorted(keys - kept):
            del self.loaded[key]
            self.dropped.append(key)
        return kept


async def test_a_stall_drops_what_was_held_before_it_and_again_after_switching_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [100.0]
    monkeypatch.setattr(stall.time, "monotonic", lambda: clock[0])
    shard = FakeShard({"old": 50.0, "busy": 60.0})
    shard.busy = {"busy"}
    health: list[bool] = []

    async def serving(ok: bool) -> None:
        health.append(ok)

    watch = StallWatch(shard, threshold=0.75, serving=serving)  # type: ignore[arg-type]
    watch.start()
    await watch.stop()  # ticks by hand below

    async def tick(after: float = TICK_SECONDS) -> None:
        clock[0] += after
        await watch.tick()

    async def run_for(seconds: float) -> None:  # ticks on time
        for _ in range(round(seconds / TICK_SECONDS)):
            await tick()

    await run_for(1.0)  # on time: nothing happens
    assert (shard.dropped, health) == ([], [])
    shard.loaded["loaded during the stall"] = clock[0] + 1.0
    await tick(TICK_SECONDS + 2.0)  # two seconds late: a stall
    assert shard.dropped == ["old"] and health == [False]
    assert "loaded during the stall" in shard.loaded  # fresh: kept
    await run_for(SETTLE_SECONDS)
    assert health == [False]  # "busy" is still held: not serving yet
    shard.busy = set()
    await tick()
    assert shard.dropped == ["old", "busy"] and health == [False, True]
    shard.loaded["hydrated while switching back"] = clock[0]
    await run_for(SETTLE_SECONDS + TICK_SECONDS)  # the second drop: what was loaded since
    assert "hydrated while switching back" in shard.dropped and health == [False, True]
    assert watch.stalls == 1
