"""HashRing: consistent hashing of namespace keys onto shards, with bounded loads.

Pure and deterministic across processes and machines: points come from blake2b (never
Python's salted `hash()`), so every router replica computes the same owners.

Each member gets `vnodes` points on a 64-bit ring; a key belongs to the member of the first
point at or after the key's hash, and fails over to the next *distinct* members clockwise.
Adding the N-th member moves about 1/N of the keys, all of them to the new member; removing
one moves only that member's keys.

Bounded load (Mirrokni, Thorup, Zadimoghaddam 2016): `choose` walks the same order but
skips a member whose in-flight load would exceed `c` x the mean, so one hot namespace
cannot pile onto one shard (c = 1.25 by default, as Envoy and KubeAI use).
"""

from __future__ import annotations

import bisect
import hashlib
import math
from collections.abc import Iterable, Mapping

DEFAULT_VNODES = 150
DEFAULT_LOAD_FACTOR = 1.25
_RING = 1 << 64


def hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


class HashRing:
    def __init__(self, members: Iterable[str] = (), vnodes: int = DEFAULT_VNODES) -> None:
        if vnodes < 1:
            raise ValueError(f"vnodes: must be >= 1, got {vnodes}")
        self.vnodes = vnodes
        self._points: list[int] = []
        self._owner_at: dict[int, str] = {}
        self._members: set[str] = set()
        for member in members:
            self.add(member)

    @property
    def members(self) -> list[str]:
        return sorted(self._members)

    def __len__(self) -> int:
        return len(self._members)

    def __contains__(self, member: str) -> bool:
        return member in self._members

    def _member_points(self, member: str) -> list[int]:
        return [hash64(f"{member}#{i}") for i in range(self.vnodes)]

    def add(self, member: str) -> None:
        if member in self._members:
            return
        self._members.add(member)
        for point in self._member_points(member):
            # A collision of 64-bit points is astronomically unlikely; keep the smaller id
            # so the outcome does not depend on the order members were added.
            holder = self._owner_at.get(point)
            if holder is None:
                bisect.insort(self._points, point)
                self._owner_at[point] = member
            elif member < holder:
                self._owner_at[point] = member

    def remove(self, member: str) -> None:
        if member not in self._members:
            return
        self._members.discard(member)
        rebuilt = HashRing(self._members, self.vnodes)
        self._points, self._owner_at = rebuilt._points, rebuilt._owner_at

    def owners(self, key: str, n: int | None = None) -> list[str]:
        """The members for `key` in failover order: the owner, then the next distinct ones."""
        if not self._points:
            return []
        wanted = len(self._members) if n is None else min(n, len(self._members))
        start = bisect.bisect_left(self._points, hash64(key))
        found: list[str] = []
        for i in range(len(self._points)):
            member = self._owner_at[self._points[(start + i) % len(self._points)]]
            if member not in found:
                found.append(member)
                if len(found) == wanted:
                    break
        return found

    def owner(self, key: str) -> str | None:
        owners = self.owners(key, 1)
        return owners[0] if owners else None

    def choose(
        self, key: str, load: Mapping[str, int], factor: float = DEFAULT_LOAD_FACTOR
    ) -> str | None:
        """The first member in `key`'s order whose load stays within `factor` x the mean.

        `load` is the in-flight count per member; the request being placed counts too.
        """
        order = self.owners(key)
        if not order:
            return None
        total = sum(load.get(m, 0) for m in self._members) + 1
        bound = math.ceil(factor * total / len(self._members))
        for member in order:
            if load.get(member, 0) + 1 <= bound:
                return member
        return order[0]  # unreachable while factor >= 1: someone is at or below the mean

    def shares(self) -> dict[str, float]:
        """The fraction of the hash space each member owns."""
        shares = dict.fromkeys(self._members, 0.0)
        for i, point in enumerate(self._points):
            previous = self._points[i - 1] if i else self._points[-1] - _RING
            shares[self._owner_at[point]] += (point - previous) / _RING
        return shares
