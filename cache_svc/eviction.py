"""Which entries to evict when a shard is over capacity: LRU, LFU, or semantic (the
default: whichever of a recency-heavy, a slowly forgetting and a plain frequency ranking has
lately misjudged the fewest entries, an entry's traffic shared with its newer paraphrases).

Pure bookkeeping over entry ids, sizes and, for a policy that asks (`uses_neighbours`), each
entry's cached neighbours (the shard finds them when it stores the entry); the shard removes
the victims from the index, the exact map and Redis together.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar


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


#: The semantic policy's rankings: how long each remembers traffic (its half-life), in
#: events per entry of capacity; None never forgets. Recency-heavy, a frequency that forgets
#: slowly, plain frequency (`bench trace`: 2 x did better than 1 x or LRU's order, 16 x than
#: 4 x or 64 x; no single one suits both a steady and a drifting stream).
HALF_LIVES_PER_ENTRY: tuple[float | None, ...] = (2, 16, None)
#: The share of the capacity each ranking holds on probation (5 and 20 % did worse).
PROBATION_SHARE = 0.1
#: The half-life of a ranking's misjudgements, in events per entry of capacity: long enough
#: not to follow noise, short enough to notice that what users ask has changed.
MISJUDGEMENT_MEMORY_PER_ENTRY = 8


def _log2_add(a: float, b: float) -> float:
    """log2(2^a + 2^b), without leaving log space (the scaled traffic outgrows a float)."""
    high, low = (a, b) if a >= b else (b, a)
    return high + math.log2(1.0 + 2.0 ** (low - high))


class _Ranking:
    """The entries ordered by worth under one half-life, the lowest on probation.

    Probation is a queue: an entry joins it when it is the lowest outside, and leaves it when
    it is hit (a misjudgement: the ranking had it among the next to go), evicted, or let go
    from the front (by a ranking that is not followed: it would have evicted it by now)."""

    def __init__(
        self, half_life: float | None, touched: dict[str, int], newer: dict[str, set[str]]
    ) -> None:
        self.half_life = half_life
        self._rate = 0.0 if half_life is None else 1.0 / half_life
        self._touched = touched  # the policy's: the event that last stored or hit each entry
        self._newer = newer  # the policy's: each entry's newer neighbours
        # log2 of each entry's traffic, scaled by 2^(event / half_life) so that entries
        # touched at different times compare without rescaling them all as time passes.
        self._traffic: dict[str, float] = {}
        # (worth, touched, id) for entries off probation; ties go to the least recently
        # used. A row is stale once its entry's worth or touch changed, it is on probation
        # or gone (its current row, if any, is in the heap too).
        self._heap: list[tuple[float, int, str]] = []
        self.probation: OrderedDict[str, None] = OrderedDict()  # longest first
        self.misjudged = 0.0  # hits on its probation, fading

    def worth(self, entry_id: str) -> float:
        """log2 of the entry's traffic (scaled), shared with its newer neighbours."""
        return self._traffic[entry_id] - math.log2(1 + len(self._newer[entry_id]))

    def touch(self, entry_id: str) -> bool:
        """Counts the store or hit at the entry's `touched` event; returns whether the entry
        was on probation."""
        weight = self._touched[entry_id] * self._rate
        previous = self._traffic.get(entry_id)
        self._traffic[entry_id] = weight if previous is None else _log2_add(previous, weight)
        on_probation = entry_id in self.probation
        if on_probation:
            del self.probation[entry_id]
        self.rescore(entry_id)
        return on_probation

    def rescore(self, entry_id: str) -> None:
        """Orders the entry by its current worth (kept in its place on probation)."""
        if entry_id in self.probation:
            return
        heapq.heappush(self._heap, (self.worth(entry_id), self._touched[entry_id], entry_id))
        self._heap = _compact(
            self._heap,
            len(self._traffic),
            lambda: (
                (self.worth(e), self._touched[e], e)
                for e in self._traffic
                if e not in self.probation
            ),
        )

    def forget(self, entry_id: str) -> None:
        del self._traffic[entry_id]
        self.probation.pop(entry_id, None)

    def fill(self, size: int) -> bool:
        """Puts the lowest entries off probation on it until it holds `size`; returns
        whether it does."""
        while len(self.probation) < size and self._heap:
            worth, touched, entry_id = heapq.heappop(self._heap)
            if (
                self._touched.get(entry_id) == touched
                and entry_id not in self.probation
                and self.worth(entry_id) == worth
            ):
                self.probation[entry_id] = None
        return len(self.probation) >= size

    def let_go(self, count: int) -> None:
        """Takes the `count` longest on probation off it."""
        for _ in range(min(count, len(self.probation))):
            entry_id, _ = self.probation.popitem(last=False)
            self.rescore(entry_id)


class Semantic(_Tracker):
    """Evicts by whichever of a few rankings of the entries has lately misjudged the fewest.

    Each ranking orders the entries by their traffic (the miss that stored an entry and its
    hits), each event weighing less as it ages, by half every `half_life` events (an event
    is a store or a hit): 2 and 16 times the capacity in entries, and never (plain
    frequency). Forgetting fast suits a stream whose questions change (what users ask now
    counts); forgetting slowly, or never, a steady one (LFU beats LRU there). The lowest
    tenth of each ranking is on probation, longest first: the followed ranking evicts from
    its front, so a new entry has a tenth of the capacity's evictions to be hit before it
    goes (LFU would take every newcomer before anything hit once). A hit on an entry on a
    ranking's probation is a misjudgement of that ranking (it had the entry among the next
    to go); misjudgements fade by half every 8 x capacity events, and the policy follows
    the ranking with the fewest, starting with plain frequency. It moves to another only
    when that one has fewer by more than the square root of the followed one's count (one
    standard deviation of a count of chance events): on a steady stream the rankings'
    counts differ by chance, and each move costs hits.

    An entry stored while cached prompts would answer it (its neighbours, the shard finds
    them: a paraphrase stored through look-aside, say) shares their traffic: an entry
    whose newer paraphrases are cached is cheap to lose, they answer its questions. The new
    entry's own worth is not shared: on a read-through miss its neighbours had not answered
    it (`bench trace` lost hits sharing it). Entries loaded from Redis come without
    neighbours and with one event's weight until used. Deterministic; each operation costs
    O(rankings x log entries), amortised."""

    uses_neighbours = True

    def __init__(
        self, capacity: Capacity, half_lives: Sequence[float | None] | None = None
    ) -> None:
        """`half_lives`: the rankings' half-lives in events (None: never forgets); by
        default `HALF_LIVES_PER_ENTRY` times the capacity in entries. It follows the last
        until another misjudges less."""
        super().__init__(capacity)
        entries = capacity.max_entries
        if half_lives is None:
            half_lives = [None if h is None else h * entries for h in HALF_LIVES_PER_ENTRY]
        if not half_lives or any(h is not None and h <= 0 for h in half_lives):
            raise ValueError(f"half_lives: must be positive or None, got {half_lives!r}")
        self._touched: dict[str, int] = {}  # the event that last stored or hit each entry
        self._events = itertools.count()
        self._older: dict[str, set[str]] = {}  # the live neighbours it was stored with
        self._newer: dict[str, set[str]] = {}  # the live entries stored with it as one
        self._rankings = [_Ranking(h, self._touched, self._newer) for h in half_lives]
        self._followed = self._rankings[-1]
        self._fading = 0.5 ** (1.0 / (MISJUDGEMENT_MEMORY_PER_ENTRY * entries))

    @property
    def half_life(self) -> float | None:
        """The followed ranking's half-life, in events (None: it never forgets)."""
        return self._followed.half_life

    def _touch(self, entry_id: str) -> None:
        self._touched[entry_id] = next(self._events)
        misjudged = False
        for ranking in self._rankings:
            ranking.misjudged *= self._fading
            if ranking.touch(entry_id):
                ranking.misjudged += 1.0
                misjudged = True
        if misjudged:  # the only time another can pull ahead: they all fade alike
            best = min(self._rankings, key=lambda r: r.misjudged)
            followed = self._followed.misjudged
            if best.misjudged < followed - math.sqrt(followed):
                self._followed = best

    def added(self, entry_id: str, size: int, neighbours: Iterable[str] = ()) -> None:
        if not self._track(entry_id, size):
            return
        older = {n for n in neighbours if n in self._touched and n != entry_id}
        self._older[entry_id], self._newer[entry_id] = older, set()
        for neighbour in older:
            self._newer[neighbour].add(entry_id)
        self._touch(entry_id)
        for ranking in self._rankings:
            for neighbour in older:
                ranking.rescore(neighbour)  # now shares its traffic: worth less

    def used(self, entry_id: str) -> None:
        if entry_id in self._touched:
            self._touch(entry_id)

    def removed(self, entry_id: str) -> None:
        if not self._untrack(entry_id):
            return
        del self._touched[entry_id]
        older = self._older.pop(entry_id)
        for neighbour in older:
            self._newer[neighbour].discard(entry_id)
        for neighbour in self._newer.pop(entry_id):
            self._older[neighbour].discard(entry_id)
        for ranking in self._rankings:
            ranking.forget(entry_id)
            for neighbour in older:
                ranking.rescore(neighbour)  # alone with more of its traffic: worth more

    def victims(self) -> list[str]:
        if not self._over():
            return []  # probation starts with eviction: misjudgements mean nothing before
        # Scaled to the entries held, should the bytes bind first.
        size = max(1, round(PROBATION_SHARE * min(self.entries, self.capacity.max_entries)))
        for ranking in self._rankings:
            ranking.fill(size)
        followed = self._followed
        chosen: list[str] = []
        freed_bytes = 0
        queue = iter(list(followed.probation))
        while self._over(len(chosen), freed_bytes):
            entry_id = next(queue, None)
            if entry_id is None:  # more to go than were on probation: the next lowest
                if not followed.fill(len(followed.probation) + 1):
                    break
                entry_id = next(reversed(followed.probation))
            chosen.append(entry_id)
            freed_bytes += self._sizes[entry_id]
        # The others' probation moves as far, so that every ranking's misjudgements are
        # hits on entries it would have evicted within as many evictions.
        for ranking in self._rankings:
            if ranking is not followed:
                ranking.let_go(len(chosen))
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
