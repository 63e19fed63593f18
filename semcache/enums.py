"""The proto's `CacheStatus` and `MatchKind` by their short names ("hit", "semantic"),
derived from the enums themselves: one map for the SDK, the shards and the HTTP front."""

from __future__ import annotations

from typing import cast

from semcache.v1 import cache_pb2


def _short_names(enum: object, prefix: str) -> dict[int, str]:
    """value -> lower-case name without the prefix; UNSPECIFIED is ""."""
    items = enum.items()  # type: ignore[attr-defined]
    return {
        v: "" if n.endswith("UNSPECIFIED") else n.removeprefix(prefix).lower() for n, v in items
    }


#: CacheStatus value -> "hit" | "miss" | "bypass" ("" when unspecified).
STATUS_NAMES = _short_names(cache_pb2.CacheStatus, "CACHE_STATUS_")
STATUS_VALUES = cast(
    dict[str, cache_pb2.CacheStatus], {name: value for value, name in STATUS_NAMES.items()}
)
#: MatchKind value -> "exact" | "semantic" ("" when no match).
KIND_NAMES = _short_names(cache_pb2.MatchKind, "MATCH_KIND_")
KIND_VALUES = cast(
    dict[str, cache_pb2.MatchKind], {name: value for value, name in KIND_NAMES.items()}
)
