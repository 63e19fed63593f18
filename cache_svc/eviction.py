"""Which entries to evict when a shard is over capacity: LRU (default), LFU, or semantic
(LFU that knows which entries answer each other's questions).

Pure bookkeeping over entry ids, sizes and, for the semantic policy, each entry's cached
neighbours (the shard finds them when it stores the entry); the shard removes the victims
from the index, the exact map and Redis together.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol, TypeVar

import numpy as np


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
    #: Whether `added` wants the entry's neighbours (a search per store; only they use it).
    uses_neighbours: bool

    def added(self, entry_id: str, size: int, neighbours: Iterable[str] = ()) -> None: ...
    def used(self, entry_id: str) -> None: ...
    def removed(self, entry_id: str) -> None: ...
    def victims(self) -> list[str]: ...


class _Tracker:
    uses_neighbours = False

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

    def added(self, entry_id: str, size: int, neighbours: Iterable[str] = ()) -> None:
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


Row = TypeVar("Row", bound=tuple[object, ...])


def _compact(heap: list[Row], live: int, rows: Callable[[], Iterable[Row]]) -> list[Row]:
    """`heap`, or, once its stale rows (an entry's earlier rows, skipped when popped)
    outnumber the live entries four to one, a heap of each live entry's current row: an
    entry hit again and again would otherwise grow it without bound."""
    if len(heap) <= 4 * live + 1024:
        return heap
    current = list(rows())
    heapq.heapify(current)
    return current


class LFU(_Tracker):
    """Evicts the least frequently used entries first; ties go to the older entry."""

    def __init__(self, capacity: Capacity) -> None:
        super().__init__(capacity)
        self._rows: dict[str, tuple[int, int, str]] = {}  # each entry's current heap row
        self._heap: list[tuple[int, int, str]] = []  # (uses, tiebreak, id); stale rows skipped
        self._tiebreak = itertools.count()

    def _push(self, entry_id: str, uses: int) -> None:
        row = self._rows[entry_id] = (uses, next(self._tiebreak), entry_id)
        heapq.heappush(self._heap, row)
        self._heap = _compact(self._heap, len(self._rows), self._rows.values)

    def added(self, entry_id: str, size: int, neighbours: Iterable[str] = ()) -> None:
        if self._track(entry_id, size):
            self._push(entry_id, 0)

    def used(self, entry_id: str) -> None:
        if entry_id in self._rows:
            self._push(entry_id, self._rows[entry_id][0] + 1)

    def removed(self, entry_id: str) -> None:
        if self._untrack(entry_id):
            del self._rows[entry_id]

    def victims(self) -> list[str]:
        chosen: list[str] = []
        freed_entries = freed_bytes = 0
        taken: set[str] = set()
        while self._heap and self._over(freed_entries, freed_bytes):
            row = heapq.heappop(self._heap)
            entry_id = row[2]
            if self._rows.get(entry_id) != row or entry_id in taken:
                continue  # a stale row: the entry was used again or is gone
            chosen.append(entry_id)
            taken.add(entry_id)
            freed_entries += 1
            freed_bytes += self._sizes[entry_id]
        for entry_id in chosen:  # the caller removes them; keep the heap consistent until then
            heapq.heappush(self._heap, self._rows[entry_id])
        return chosen


#: The semantic policy's default half-life of traffic, in events per entry of capacity.
HALF_LIFE_PER_ENTRY = 4


class Semantic(_Tracker):
    """Evicts first the entries whose loss costs the fewest hits from here on.

    An entry's worth is its recent traffic (its hits and the miss that stored it, each
    halving in weight every `half_life` events, an event being a store or a hit: a
    frequency that forgets, so the questions users stopped asking give way to the ones they
    ask now), shared among the cached entries that answer the same questions: itself and
    its live neighbours (cached prompts of its namespace the hit policy would serve for its
    prompt, found when it was stored: a paraphrase stored again through look-aside, a
    prompt stored while the embedder was away and embedded later). An entry whose
    paraphrases are all cached is cheap to lose: they go on absorbing its traffic; the last
    of a busy neighbourhood is not. Ties go to the least recently used.

    `half_life` defaults to four times the capacity in entries (`bench trace`: one times
    forgot too fast on a steady stream, sixteen too slowly when what users ask changed).
    Entries loaded from Redis come without neighbours and with one event's weight until
    they are used."""

    uses_neighbours = True

    def __init__(self, capacity: Capacity, half_life: int | None = None) -> None:
        super().__init__(capacity)
        self.half_life = half_life or HALF_LIFE_PER_ENTRY * capacity.max_entries
        # log2 of each entry's traffic, scaled by 2^(event / half_life) so that entries
        # touched at different times compare without rescaling them all as time passes.
        self._traffic: dict[str, float] = {}
        self._neighbours: dict[str, set[str]] = {}
        self._touched: dict[str, int] = {}  # the event that last stored or hit it
        self._events = itertools.count()
        # (worth, touched, id): a row is stale when the entry's worth or touch has changed.
        self._heap: list[tuple[float, int, str]] = []

    def _worth(self, entry_id: str, gone: set[str] | frozenset[str] = frozenset()) -> float:
        sharing = 1 + len(self._neighbours[entry_id] - gone)
        return self._traffic[entry_id] - math.log2(sharing)

    def _push(self, entry_id: str) -> None:
        heapq.heappush(self._heap, (self._worth(entry_id), self._touched[entry_id], entry_id))
        self._heap = _compact(
            self._heap,
            len(self._traffic),
            lambda: ((self._worth(e), self._touched[e], e) for e in self._traffic),
        )

    def _event(self, entry_id: str) -> float:
        """Records an event on the entry; returns its weight (log2, scaled)."""
        event = self._touched[entry_id] = next(self._events)
        return event / self.half_life

    def added(self, entry_id: str, size: int, neighbours: Iterable[str] = ()) -> None:
        if not self._track(entry_id, size):
            return
        self._traffic[entry_id] = self._event(entry_id)
        live = {n for n in neighbours if n in self._traffic and n != entry_id}
        self._neighbours[entry_id] = live
        for neighbour in live:
            self._neighbours[neighbour].add(entry_id)
            self._push(neighbour)  # now shares its traffic: worth less
        self._push(entry_id)

    def used(self, entry_id: str) -> None:
        if entry_id in self._traffic:
            weight = self._event(entry_id)
            self._traffic[entry_id] = float(np.logaddexp2(self._traffic[entry_id], weight))
            self._push(entry_id)

    def removed(self, entry_id: str) -> None:
        if not self._untrack(entry_id):
            return
        del self._traffic[entry_id], self._touched[entry_id]
        for neighbour in self._neighbours.pop(entry_id):
            self._neighbours[neighbour].discard(entry_id)
            self._push(neighbour)  # alone with more of the traffic: worth more

    def victims(self) -> list[str]:
        chosen: list[str] = []
        taken: set[str] = set()
        freed_bytes = 0
        while self._heap and self._over(len(chosen), freed_bytes):
            worth, touched, entry_id = heapq.heappop(self._heap)
            if entry_id not in self._traffic or entry_id in taken:
                continue
            if touched != self._touched[entry_id]:
                continue  # stale: a newer row has its use
            current = self._worth(entry_id, taken)
            if current != worth:  # stale, or its neighbours are going in this round
                heapq.heappush(self._heap, (current, touched, entry_id))
                continue
            chosen.append(entry_id)
            taken.add(entry_id)
            freed_bytes += self._sizes[entry_id]
        for entry_id in chosen:  # the caller removes them; keep the heap consistent until then
            self._push(entry_id)
        return chosen


#: The policies `--eviction` names.
POLICIES: dict[str, type[LRU] | type[LFU] | type[Semantic]] = {
    "lru": LRU,
    "lfu": LFU,
    "semantic": Semantic,
}


def make_eviction(policy: str, capacity: Capacity) -> Eviction:
    if policy not in POLICIES:
        raise ValueError(f"eviction: must be one of {', '.join(POLICIES)}, got {policy!r}")
    return POLICIES[policy](capacity)
