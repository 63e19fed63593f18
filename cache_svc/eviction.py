"""Which entries to evict when a shard is over capacity: LRU (default) or LFU.

Pure bookkeeping over entry ids and sizes; the shard removes the victims from the index,
the exact map and Redis together.
"""

from __future__ import annotations

import heapq
import itertools
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Capacity:
    max_entries: int = 100_000
    max_bytes: int = 1024 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.max_entries < 1 or self.max_bytes < 1:
            raise ValueError(f"capacity limits must be positive: {self}")


class Eviction(Protocol):
    """Tracks entries and names victims when the total exceeds the capacity."""

    entries: int
    bytes: int

    def added(self, entry_id: str, size: int) -> None: ...
    def used(self, entry_id: str) -> None: ...
    def removed(self, entry_id: str) -> None: ...
    def victims(self) -> list[str]: ...


class _Tracker:
    def __init__(self, capacity: Capacity) -> None:
        self.capacity = capacity
        self.entries = 0
        self.bytes = 0
        self._sizes: dict[str, int] = {}

    def _track(self, entry_id: str, size: int) -> bool:
        if entry_id in self._sizes:
            return False
        self._sizes[entry_id] = size
        self.entries += 1
        self.bytes += size
        return True

    def _untrack(self, entry_id: str) -> bool:
        size = self._sizes.pop(entry_id, None)
        if size is None:
            return False
        self.entries -= 1
        self.bytes -= size
        return True

    def _over(self, extra_entries: int = 0, extra_bytes: int = 0) -> bool:
        return (
            self.entries - extra_entries > self.capacity.max_entries
            or self.bytes - extra_bytes > self.capacity.max_bytes
        )


class LRU(_Tracker):
    """Evicts the least recently used (stored or hit) entries first."""

    def __init__(self, capacity: Capacity) -> None:
        super().__init__(capacity)
        self._order: OrderedDict[str, None] = OrderedDict()

    def added(self, entry_id: str, size: int) -> None:
        if self._track(entry_id, size):
            self._order[entry_id] = None

    def used(self, entry_id: str) -> None:
        if entry_id in self._order:
            self._order.move_to_end(entry_id)

    def removed(self, entry_id: str) -> None:
        if self._untrack(entry_id):
            del self._order[entry_id]

    def victims(self) -> list[str]:
        chosen: list[str] = []
        freed_bytes = 0
        for entry_id in self._order:
            if not self._over(len(chosen), freed_bytes):
                break
            chosen.append(entry_id)
            freed_bytes += self._sizes[entry_id]
        return chosen


class LFU(_Tracker):
    """Evicts the least frequently used entries first; ties go to the older entry."""

    def __init__(self, capacity: Capacity) -> None:
        super().__init__(capacity)
        self._uses: dict[str, int] = {}
        self._heap: list[tuple[int, int, str]] = []  # (uses, tiebreak, id); stale rows skipped
        self._tiebreak = itertools.count()

    def added(self, entry_id: str, size: int) -> None:
        if self._track(entry_id, size):
            self._uses[entry_id] = 0
            heapq.heappush(self._heap, (0, next(self._tiebreak), entry_id))

    def used(self, entry_id: str) -> None:
        if entry_id in self._uses:
            self._uses[entry_id] += 1
            heapq.heappush(self._heap, (self._uses[entry_id], next(self._tiebreak), entry_id))

    def removed(self, entry_id: str) -> None:
        if self._untrack(entry_id):
            del self._uses[entry_id]

    def victims(self) -> list[str]:
        chosen: list[str] = []
        freed_entries = freed_bytes = 0
        taken: set[str] = set()
        while self._heap and self._over(freed_entries, freed_bytes):
            uses, _, entry_id = heapq.heappop(self._heap)
            if self._uses.get(entry_id) != uses or entry_id in taken:
                continue  # a stale row: the entry was used again or is gone
            chosen.append(entry_id)
            taken.add(entry_id)
            freed_entries += 1
            freed_bytes += self._sizes[entry_id]
        for entry_id in chosen:  # the caller removes them; keep the heap consistent until then
            heapq.heappush(self._heap, (self._uses[entry_id], next(self._tiebreak), entry_id))
        return chosen


def make_eviction(policy: str, capacity: Capacity) -> Eviction:
    policies: dict[str, type[LRU] | type[LFU]] = {"lru": LRU, "lfu": LFU}
    if policy not in policies:
        raise ValueError(f"eviction: must be one of {', '.join(policies)}, got {policy!r}")
    return policies[policy](capacity)
