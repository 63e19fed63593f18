"""What a call returns: plain frozen dataclasses, never protobuf messages."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from semcache.client.errors import SemcacheError
from semcache.enums import KIND_NAMES, STATUS_NAMES
from semcache.v1 import cache_pb2


def _fields_of(cls: type, message: Any) -> dict[str, Any]:
    """The dataclass's fields read off the proto message of the same field names."""
    return {f.name: getattr(message, f.name) for f in dataclasses.fields(cls)}


@dataclass(frozen=True, slots=True)
class Timings:
    """Where the time went, in milliseconds; stages that did not run are 0."""

    total_ms: float = 0.0
    embed_ms: float = 0.0
    search_ms: float = 0.0
    llm_ms: float = 0.0
    store_ms: float = 0.0
    route_ms: float = 0.0

    @classmethod
    def from_proto(cls, message: cache_pb2.Timings) -> Timings:
        return cls(**_fields_of(cls, message))


@dataclass(frozen=True, slots=True)
class CacheInfo:
    """What the cache did for one request.

    `status` is "hit", "miss" or "bypass" (no_cache: the lookup was skipped); `kind` is
    "exact", "semantic" or "" (no match). `similarity` is the cosine similarity of the best
    candidate (also on a miss), `threshold` the one the hit policy applied, `entry_id` the
    matched entry (hit) or the stored one (a miss that was stored). `degraded` names what
    kept the cache from its full job (e.g. "embedder_unavailable"); empty when healthy.

    The other scores of the hit policy: `guard` is the guard (or "model") that turned a
    candidate above the threshold into a miss; `runner_up_similarity` the next-nearest
    candidate's similarity; `fired_guards` the guards whose edit the two prompts differ by;
    `hit_probability` the calibrated hit model's probability that the answer is right and
    `hit_cut` what it needed (None where that score was not computed).
    """

    status: str
    kind: str
    similarity: float
    threshold: float
    entry_id: str
    matched_prompt: str
    shard: str
    namespace: str
    category: str
    coalesced: bool
    stored: bool
    age_seconds: float
    degraded: tuple[str, ...]
    timings: Timings
    guard: str = ""
    runner_up_similarity: float | None = None
    fired_guards: tuple[str, ...] = ()
    hit_probability: float | None = None
    hit_cut: float | None = None

    @classmethod
    def from_proto(cls, message: cache_pb2.CacheInfo) -> CacheInfo:
        absent = {
            name: None
            for name in ("runner_up_similarity", "hit_probability", "hit_cut")
            if not message.HasField(name)
        }
        return cls(
            **_fields_of(cls, message)
            | {
                "status": STATUS_NAMES.get(message.status, ""),
                "kind": KIND_NAMES.get(message.kind, ""),
                "degraded": tuple(message.degraded),
                "timings": Timings.from_proto(message.timings),
                "fired_guards": tuple(message.fired_guards),
            }
            | absent
        )


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens producing the answer cost upstream (reported again on hits)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0

    @classmethod
    def from_proto(cls, message: cache_pb2.Usage) -> Usage:
        return cls(**_fields_of(cls, message))


@dataclass(frozen=True, slots=True)
class Completion:
    """An answer and what the cache did to get it.

    `text` is None when there is no answer: a `lookup` that missed (or was bypassed).
    `chunks` are the pieces a streamed answer came in; `metadata` is the caller data stored
    with the entry.
    """

    text: str | None
    cache: CacheInfo
    finish_reason: str = ""
    usage: Usage = Usage()
    chunks: tuple[str, ...] = ()
    metadata: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @property
    def hit(self) -> bool:
        """The answer came from the cache."""
        return self.cache.status == "hit"

    @classmethod
    def from_proto(
        cls, message: cache_pb2.LookupResponse | cache_pb2.CompleteResponse
    ) -> Completion:
        cache = CacheInfo.from_proto(message.cache)
        if not message.HasField("answer"):
            return cls(text=None, cache=cache)
        answer = message.answer
        return cls(
            text=answer.text or "".join(answer.chunks),
            cache=cache,
            finish_reason=answer.finish_reason,
            usage=Usage.from_proto(answer.usage),
            chunks=tuple(answer.chunks),
            metadata=dict(answer.metadata),
        )


@dataclass(frozen=True, slots=True)
class Stored:
    """Where `store` put the answer; `replaced`: an entry for the same prompt was replaced;
    `unchanged`: the same prompt and answer were there already (kept, nothing re-embedded)."""

    entry_id: str
    shard: str
    namespace: str
    replaced: bool
    timings: Timings
    unchanged: bool = False

    @classmethod
    def from_proto(cls, message: cache_pb2.StoreResponse) -> Stored:
        return cls(**_fields_of(cls, message) | {"timings": Timings.from_proto(message.timings)})


@dataclass(frozen=True, slots=True)
class ShardStats:
    """One shard's counters (or their sum over all shards, as `Stats.total`)."""

    shard: str
    address: str
    reachable: bool
    entries: int
    namespaces: int
    bytes: int
    lookups: int
    hits: int
    exact_hits: int
    semantic_hits: int
    misses: int
    coalesced: int
    evictions: int
    wrong_hits: int
    redis_state: str
    redis_backlog: int
    embedder_state: str
    model: str
    reembed_pending: int
    reembedded: int
    redis_written_back: int = 0

    @classmethod
    def from_proto(cls, message: cache_pb2.ShardStats) -> ShardStats:
        return cls(**_fields_of(cls, message))


@dataclass(frozen=True, slots=True)
class Stats:
    """Every shard's counters and their total."""

    shards: tuple[ShardStats, ...]
    total: ShardStats

    @classmethod
    def from_proto(cls, message: cache_pb2.StatsResponse) -> Stats:
        return cls(
            tuple(ShardStats.from_proto(s) for s in message.shards),
            ShardStats.from_proto(message.total),
        )


@dataclass(frozen=True, slots=True)
class RingMember:
    """A shard on the router's ring; `share` is the fraction of the hash space it owns."""

    id: str
    address: str
    share: float
    healthy: bool
    in_flight: int

    @classmethod
    def from_proto(cls, message: cache_pb2.RingMember) -> RingMember:
        return cls(**_fields_of(cls, message))


@dataclass(frozen=True, slots=True)
class Ring:
    """The router's ring. `namespace` and `owners` (failover order, owner first) are set
    only when a scope was asked about."""

    members: tuple[RingMember, ...]
    vnodes: int
    load_factor: float
    namespace: str
    owners: tuple[str, ...]

    @classmethod
    def from_proto(cls, message: cache_pb2.RingResponse) -> Ring:
        return cls(
            members=tuple(RingMember.from_proto(m) for m in message.members),
            vnodes=message.vnodes,
            load_factor=message.load_factor,
            namespace=message.namespace,
            owners=tuple(message.owners),
        )


@dataclass(frozen=True, slots=True)
class Imported:
    """One entry of `import_entries`: its position in the input (from 0) and where it went,
    or why it was not stored (`error`: refused by the client or the server)."""

    index: int
    stored: Stored | None
    error: SemcacheError | None = None
