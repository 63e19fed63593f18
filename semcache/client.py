"""The Python client SDK: `AsyncClient` (asyncio) and `Client` (blocking), one implementation.

    from semcache.client import AsyncClient, Client

    async with AsyncClient("127.0.0.1:50051", tenant="acme") as cache:
        done = await cache.complete("How do I reset my password?", model="gpt-4o")
        print(done.text, done.hit, done.cache.similarity)

    with Client("127.0.0.1:50051", tenant="acme") as cache:      # same methods, blocking
        found = cache.lookup("enable 2FA on GitHub", model="gpt-4o")
        if not found.hit:
            cache.store("enable 2FA on GitHub", "...your LLM's answer...", model="gpt-4o")

Every call takes the scope as keywords (see `ScopeArgs`): `tenant` (the client's by
default), `model`, `system`, `history` and `params`. Results are plain frozen dataclasses,
never protobuf messages. Every failure is a `SemcacheError` carrying the gRPC status code.

Retries: a call that ends UNAVAILABLE (nothing listening, no shard could serve) or
CANCELLED by the server (a router stopping under it; the SDK's own cancellations never come
back as an error) is tried again up to `retries` more times, after exponential backoff with
full jitter capped at `max_backoff`; the call's `timeout` is one deadline for all attempts
together. An UNAVAILABLE that the LLM upstream caused (trailing metadata `semcache-error:
upstream`) is not retried, and a stream is retried only before its first message.
"""

# `timeout` parameters on coroutines are deliberate: each is the gRPC deadline sent to the
# server and shared by the retries, which `asyncio.timeout` around a call cannot express.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import dataclasses
import functools
import inspect
import random
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, Self, TypedDict, TypeVar, Unpack

import grpc

from semcache import keys
from semcache.channel import CHANNEL_OPTIONS
from semcache.metadata import UPSTREAM_ERROR
from semcache.v1 import cache_pb2, cache_pb2_grpc

__all__ = [
    "AsyncClient",
    "AsyncCompletionStream",
    "CacheInfo",
    "Client",
    "Completion",
    "CompletionStream",
    "Ring",
    "RingMember",
    "ScopeArgs",
    "SemcacheError",
    "ShardStats",
    "Stats",
    "Stored",
    "Timings",
    "Usage",
]

DEFAULT_ADDRESS = "127.0.0.1:50051"
#: Codes a retry may cure: no server answered, or a server stopped under the call.
_RETRIED = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)

P = ParamSpec("P")
R = TypeVar("R")


# --- results -------------------------------------------------------------------------------


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


_STATUS = {
    cache_pb2.CACHE_STATUS_HIT: "hit",
    cache_pb2.CACHE_STATUS_MISS: "miss",
    cache_pb2.CACHE_STATUS_BYPASS: "bypass",
}
_KIND = {cache_pb2.MATCH_KIND_EXACT: "exact", cache_pb2.MATCH_KIND_SEMANTIC: "semantic"}


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
                "status": _STATUS.get(message.status, ""),
                "kind": _KIND.get(message.kind, ""),
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
    """Where `store` put the answer; `replaced`: an entry for the same prompt was replaced."""

    entry_id: str
    shard: str
    namespace: str
    replaced: bool
    timings: Timings

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


# --- errors --------------------------------------------------------------------------------


class SemcacheError(Exception):
    """A call failed. `code` is the gRPC status (`grpc.StatusCode`), `details` the server's
    (or gRPC's) message. `upstream` is True when the LLM upstream caused it, not the cache.
    `attempts` counts the tries made (more than 1 after UNAVAILABLE retries)."""

    def __init__(
        self,
        code: grpc.StatusCode,
        details: str,
        *,
        address: str = "",
        upstream: bool = False,
        unreachable: bool = False,
        attempts: int = 1,
    ) -> None:
        self.code = code
        self.details = details
        self.address = address
        self.upstream = upstream
        self.attempts = attempts
        message = f"{code.name}: {details}"
        if unreachable:
            tries = f"; {attempts} attempts" if attempts > 1 else ""
            message = f"nothing answers at {address} ({message}{tries})"
        elif attempts > 1:
            message += f" (after {attempts} attempts)"
        super().__init__(message)


def _is_upstream(error: grpc.aio.AioRpcError) -> bool:
    return UPSTREAM_ERROR in tuple(error.trailing_metadata() or ())


# --- requests ------------------------------------------------------------------------------


class ScopeArgs(TypedDict, total=False):
    """The scope keywords every call takes: two calls can share an answer only when these
    are equal.

    `history` holds the turns before the prompt, oldest first, as (role, content) pairs or
    {"role": ..., "content": ...} dicts. `params` holds the answer-changing generation
    parameters: temperature, top_p, max_tokens, seed, stop (a string or a list),
    presence_penalty, frequency_penalty, and `extra` for any other (a dict: each value is
    keyed as canonical JSON, strings included, as the OpenAI front keys the same request's
    other fields: `{"reasoning_effort": "high", "response_format": {...}}`).
    """

    tenant: str
    model: str
    system: str
    history: Iterable[tuple[str, str] | Mapping[str, str]]
    params: Mapping[str, Any]


def _params(params: Mapping[str, Any]) -> cache_pb2.GenerationParams:
    unknown = sorted(set(params) - {*keys.OPTIONAL_PARAMS, "stop", "extra"})
    if unknown:
        raise ValueError(
            f"params: unknown {', '.join(unknown)}; put other answer-changing "
            "parameters under 'extra'"
        )
    message = cache_pb2.GenerationParams(
        **{name: params[name] for name in keys.OPTIONAL_PARAMS if params.get(name) is not None}
    )
    stop = params.get("stop") or ()
    message.stop.extend([stop] if isinstance(stop, str) else stop)
    for key, value in (params.get("extra") or {}).items():
        message.extra[key] = keys.canonical_json(value)  # as the OpenAI front keys it
    return message


def _turn(turn: tuple[str, str] | Mapping[str, str]) -> cache_pb2.Turn:
    if isinstance(turn, Mapping):
        return cache_pb2.Turn(role=turn["role"], content=turn["content"])
    role, content = turn
    return cache_pb2.Turn(role=role, content=content)


def _scope(
    default_tenant: str,
    *,
    tenant: str | None = None,
    model: str = "",
    system: str = "",
    history: Iterable[tuple[str, str] | Mapping[str, str]] = (),
    params: Mapping[str, Any] | None = None,
) -> cache_pb2.Scope:
    return cache_pb2.Scope(
        tenant=default_tenant if tenant is None else tenant,
        model=model,
        system_prompt=system,
        params=_params(params or {}),
        history=[_turn(t) for t in history],
    )


def _control(
    no_cache: bool = False,
    no_store: bool = False,
    max_age: int | None = None,
    ttl: int | None = None,
) -> cache_pb2.CacheControl:
    control = cache_pb2.CacheControl(no_cache=no_cache, no_store=no_store)
    if max_age is not None:
        control.max_age_seconds = max_age
    if ttl is not None:
        control.ttl_seconds = ttl
    return control


# --- the asyncio client --------------------------------------------------------------------


class AsyncClient:
    """The semcache client for asyncio code; talks to a router (or a single shard).

    `token` is sent on every call as `authorization: Bearer <token>`; `tenant` is the scope
    tenant of calls that name none (empty: the token's tenant when the router has auth on,
    else "default"). `timeout` (seconds, None for no deadline) is every
    call's default deadline, covering all its attempts. UNAVAILABLE is retried `retries`
    more times after a random delay in [0, min(max_backoff, backoff * 2**attempt)].
    `credentials` (`grpc.ssl_channel_credentials(...)`, or `TlsFiles.read(ca=...)
    .channel_credentials()` from `semcache.tls`) dials the router over TLS; without them,
    plaintext. `channel`: a `grpc.aio` channel to use instead of opening one to `address`
    (it is then the caller's to close).

    Use as `async with AsyncClient(...) as cache:` or call `await cache.aclose()`. Make it
    inside the event loop that uses it (a `grpc.aio` channel belongs to one loop).
    """

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        *,
        token: str | None = None,
        tenant: str = "",
        timeout: float | None = 10.0,
        retries: int = 3,
        backoff: float = 0.1,
        max_backoff: float = 2.0,
        credentials: grpc.ChannelCredentials | None = None,
        channel: grpc.aio.Channel | None = None,
    ) -> None:
        if retries < 0 or backoff < 0 or max_backoff < 0 or (timeout is not None and timeout <= 0):
            raise ValueError("retries, backoff and max_backoff must be >= 0, timeout > 0")
        self.address = address
        self.tenant = tenant
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._owns_channel = channel is None
        if channel is None:
            # The channel's own reconnect backoff (1 s at first by default) follows ours, so
            # a retry after a refused connection really dials again; its own subchannel pool
            # keeps it from inheriting another client's backoff to the same address.
            options = [
                *CHANNEL_OPTIONS,
                ("grpc.use_local_subchannel_pool", 1),
                ("grpc.initial_reconnect_backoff_ms", max(1, int(1000 * backoff))),
                ("grpc.max_reconnect_backoff_ms", max(1, int(1000 * max_backoff))),
            ]
            if credentials is None:
                channel = grpc.aio.insecure_channel(address, options=options)
            else:
                channel = grpc.aio.secure_channel(address, credentials, options=options)
        self._channel = channel
        self._cache = cache_pb2_grpc.SemanticCacheStub(channel)
        self._admin = cache_pb2_grpc.AdminStub(channel)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Closes the channel (unless it was given to the constructor)."""
        if self._owns_channel:
            await self._channel.close()

    # The calls ---------------------------------------------------------------------------

    async def lookup(
        self,
        prompt: str,
        *,
        category: str = "",
        min_similarity: float | None = None,
        no_cache: bool = False,
        max_age: int | None = None,
        timeout: float | None = None,
        **scope: Unpack[ScopeArgs],
    ) -> Completion:
        """Looks `prompt` up without calling the LLM; `text` is None on a miss.

        `min_similarity` can only make the hit policy stricter (cosine, in [-1, 1]);
        `max_age` (seconds) accepts only younger entries; `category` picks the policy's
        threshold (detected when empty).
        """
        request = cache_pb2.LookupRequest(
            scope=_scope(self.tenant, **scope),
            prompt=prompt,
            category=category,
            min_similarity=min_similarity,
            cache_control=_control(no_cache, max_age=max_age),
        )
        return Completion.from_proto(await self._unary(self._cache.Lookup, request, timeout))

    async def store(
        self,
        prompt: str,
        answer: str,
        *,
        ttl: int | None = None,
        category: str = "",
        metadata: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **scope: Unpack[ScopeArgs],
    ) -> Stored:
        """Stores `answer` for `prompt` (look-aside: your code made the LLM call).

        `ttl` (seconds) defaults to the shard's; `metadata` is opaque data kept with the
        entry and returned with it on hits.
        """
        request = cache_pb2.StoreRequest(
            scope=_scope(self.tenant, **scope),
            prompt=prompt,
            category=category,
            answer=cache_pb2.Answer(text=answer, metadata=metadata or {}),
            ttl_seconds=ttl,
        )
        return Stored.from_proto(await self._unary(self._cache.Store, request, timeout))

    async def complete(
        self,
        prompt: str,
        *,
        category: str = "",
        min_similarity: float | None = None,
        no_cache: bool = False,
        no_store: bool = False,
        max_age: int | None = None,
        ttl: int | None = None,
        timeout: float | None = None,
        **scope: Unpack[ScopeArgs],
    ) -> Completion:
        """Read-through: the cached answer, or on a miss the LLM's (stored unless
        `no_store`). `no_cache` skips the lookup; `ttl` is the stored entry's lifetime."""
        request = self._complete_request(
            prompt, category, min_similarity, no_cache, no_store, max_age, ttl, scope
        )
        return Completion.from_proto(await self._unary(self._cache.Complete, request, timeout))

    async def stream_complete(
        self,
        prompt: str,
        *,
        category: str = "",
        min_similarity: float | None = None,
        no_cache: bool = False,
        no_store: bool = False,
        max_age: int | None = None,
        ttl: int | None = None,
        timeout: float | None = None,
        **scope: Unpack[ScopeArgs],
    ) -> AsyncCompletionStream:
        """`complete`, streamed. Returns once the cache has decided (hit or miss), with
        `.cache` set; iterate it for the text deltas:

            stream = await cache.stream_complete("Explain DNS")
            print(stream.cache.status)
            async for delta in stream:
                print(delta, end="")
            print(stream.finish_reason, stream.usage, stream.cache.entry_id)

        After the last delta `.cache` is the final CacheInfo (timings, the stored entry),
        and `.finish_reason` and `.usage` are set. The timeout covers the whole stream.
        """
        request = self._complete_request(
            prompt, category, min_similarity, no_cache, no_store, max_age, ttl, scope
        )
        deadline = self._deadline(timeout)
        attempt = 0
        while True:
            call = self._cache.StreamComplete(
                request, timeout=self._remaining(deadline), metadata=self._metadata
            )
            try:
                first = await call.read()
            except grpc.aio.AioRpcError as e:
                delay = self._retry_delay(e, attempt, deadline)
                if delay is None:
                    raise self._error(e, attempt + 1, before_reply=True) from None
            except BaseException:
                call.cancel()
                raise
            else:
                if first is grpc.aio.EOF:
                    raise SemcacheError(
                        grpc.StatusCode.INTERNAL, "the stream ended empty", address=self.address
                    )
                return AsyncCompletionStream(self, call, first)
            await asyncio.sleep(delay)
            attempt += 1

    async def invalidate(
        self,
        *,
        entry_id: str | None = None,
        namespace: bool = False,
        tenant_wide: bool = False,
        timeout: float | None = None,
        **scope: Unpack[ScopeArgs],
    ) -> int:
        """Removes entries; returns how many. Exactly one target: `entry_id` (one entry),
        `namespace=True` (every entry of the scope's namespace) or `tenant_wide=True` (every
        entry of the scope's tenant, in every namespace)."""
        if (entry_id is not None) + namespace + tenant_wide != 1:
            raise ValueError(
                "invalidate: give exactly one of entry_id, namespace=True, tenant_wide=True"
            )
        targets = cache_pb2.InvalidateRequest
        target = (
            targets.TARGET_ENTRY
            if entry_id is not None
            else targets.TARGET_NAMESPACE
            if namespace
            else targets.TARGET_TENANT
        )
        request = cache_pb2.InvalidateRequest(
            target=target, scope=_scope(self.tenant, **scope), entry_id=entry_id or ""
        )
        return (await self._unary(self._cache.Invalidate, request, timeout)).removed

    async def feedback(
        self,
        entry_id: str,
        *,
        wrong: bool,
        prompt: str = "",
        timeout: float | None = None,
        **scope: Unpack[ScopeArgs],
    ) -> bool:
        """Reports how the hit on `entry_id` turned out; `wrong=True` removes the entry
        everywhere. `prompt` is the prompt it answered (kept for calibration). Returns
        whether the entry was removed."""
        verdicts = cache_pb2.FeedbackRequest
        request = cache_pb2.FeedbackRequest(
            scope=_scope(self.tenant, **scope),
            entry_id=entry_id,
            prompt=prompt,
            verdict=verdicts.VERDICT_WRONG_HIT if wrong else verdicts.VERDICT_CORRECT_HIT,
        )
        return (await self._unary(self._cache.Feedback, request, timeout)).removed

    async def stats(self, *, timeout: float | None = None) -> Stats:
        """Every shard's counters, and their total."""
        return Stats.from_proto(
            await self._unary(self._admin.Stats, cache_pb2.StatsRequest(), timeout)
        )

    async def ring(self, *, timeout: float | None = None, **scope: Unpack[ScopeArgs]) -> Ring:
        """The router's ring; with any scope keyword also the scope's namespace and its
        owners in failover order."""
        request = cache_pb2.RingRequest()
        if scope:
            request.scope.CopyFrom(_scope(self.tenant, **scope))
        return Ring.from_proto(await self._unary(self._admin.Ring, request, timeout))

    # Plumbing ----------------------------------------------------------------------------

    def _complete_request(
        self,
        prompt: str,
        category: str,
        min_similarity: float | None,
        no_cache: bool,
        no_store: bool,
        max_age: int | None,
        ttl: int | None,
        scope: ScopeArgs,
    ) -> cache_pb2.CompleteRequest:
        return cache_pb2.CompleteRequest(
            scope=_scope(self.tenant, **scope),
            prompt=prompt,
            category=category,
            min_similarity=min_similarity,
            cache_control=_control(no_cache, no_store, max_age, ttl),
        )

    def _deadline(self, timeout: float | None) -> float | None:
        timeout = self.timeout if timeout is None else timeout
        return None if timeout is None else time.monotonic() + timeout

    @staticmethod
    def _remaining(deadline: float | None) -> float | None:
        return None if deadline is None else max(deadline - time.monotonic(), 0.0)

    def _retry_delay(
        self, error: grpc.aio.AioRpcError, attempt: int, deadline: float | None
    ) -> float | None:
        """Seconds to wait before the next attempt, or None: do not retry."""
        if error.code() not in _RETRIED or attempt >= self.retries:
            return None
        if _is_upstream(error):  # the LLM failed, not the cache: another try is the caller's call
            return None
        delay = random.uniform(0, min(self.max_backoff, self.backoff * 2**attempt))
        if deadline is not None and time.monotonic() + delay >= deadline:
            return None  # the next attempt would start past the deadline
        return delay

    def _error(
        self, error: grpc.aio.AioRpcError, attempts: int, before_reply: bool
    ) -> SemcacheError:
        code = error.code()
        upstream = _is_upstream(error)
        # UNAVAILABLE from a server that answered leaves the channel READY; a refused or
        # broken connection does not.
        unreachable = (
            before_reply
            and code == grpc.StatusCode.UNAVAILABLE
            and not upstream
            and self._channel.get_state() != grpc.ChannelConnectivity.READY
        )
        return SemcacheError(
            code,
            error.details() or "",
            address=self.address,
            upstream=upstream,
            unreachable=unreachable,
            attempts=attempts,
        )

    async def _unary(
        self, method: grpc.aio.UnaryUnaryMultiCallable, request: Any, timeout: float | None
    ) -> Any:
        deadline = self._deadline(timeout)
        attempt = 0
        while True:
            try:
                return await method(
                    request, timeout=self._remaining(deadline), metadata=self._metadata
                )
            except grpc.aio.AioRpcError as e:
                delay = self._retry_delay(e, attempt, deadline)
                if delay is None:
                    raise self._error(e, attempt + 1, before_reply=True) from None
            await asyncio.sleep(delay)
            attempt += 1


# --- streams -------------------------------------------------------------------------------


class _StreamProgress:
    """What a stream has told so far; shared by the asyncio and the blocking stream."""

    __slots__ = ("cache", "chunks", "done", "finish_reason", "usage")

    def __init__(self) -> None:
        self.cache: CacheInfo | None = None
        self.chunks: list[str] = []
        self.finish_reason = ""
        self.usage: Usage | None = None
        self.done = False


class _StreamView:
    _progress: _StreamProgress

    @property
    def cache(self) -> CacheInfo:
        """The start chunk's CacheInfo; after the end, the final one."""
        assert self._progress.cache is not None
        return self._progress.cache

    @property
    def hit(self) -> bool:
        return self.cache.status == "hit"

    @property
    def finish_reason(self) -> str:
        """Why the answer ended ("stop", "length", ...); "" until the stream has ended."""
        return self._progress.finish_reason

    @property
    def usage(self) -> Usage | None:
        """Token usage; None until the stream has ended."""
        return self._progress.usage

    @property
    def chunks(self) -> tuple[str, ...]:
        """The deltas received so far."""
        return tuple(self._progress.chunks)

    @property
    def text(self) -> str:
        """The answer text received so far (all of it once `done`)."""
        return "".join(self._progress.chunks)

    @property
    def done(self) -> bool:
        """The stream has ended normally."""
        return self._progress.done


class AsyncCompletionStream(_StreamView, AsyncIterator[str]):
    """An answer arriving in text deltas: `async for delta in stream`. See
    `AsyncClient.stream_complete`. `await stream.aclose()` abandons it early."""

    def __init__(
        self, client: AsyncClient, call: grpc.aio.UnaryStreamCall, first: cache_pb2.CompleteChunk
    ) -> None:
        self._client = client
        self._call = call
        self._progress = _StreamProgress()
        self._pending = self._take(first)

    def _take(self, chunk: cache_pb2.CompleteChunk) -> str | None:
        """Records a chunk; returns its text if it is a delta."""
        match chunk.WhichOneof("event"):
            case "delta":
                self._progress.chunks.append(chunk.delta)
                return chunk.delta
            case "start":
                self._progress.cache = CacheInfo.from_proto(chunk.start)
            case "end":
                end = chunk.end
                self._progress.finish_reason = end.finish_reason
                self._progress.usage = Usage.from_proto(end.usage)
                if end.HasField("cache"):
                    self._progress.cache = CacheInfo.from_proto(end.cache)
        return None

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> str:
        if self._pending is not None:
            delta, self._pending = self._pending, None
            return delta
        while True:
            try:
                chunk = await self._call.read()
            except grpc.aio.AioRpcError as e:
                raise self._client._error(e, 1, before_reply=False) from None
            if chunk is grpc.aio.EOF:
                self._progress.done = True
                raise StopAsyncIteration
            delta = self._take(chunk)
            if delta is not None:
                return delta

    async def aclose(self) -> None:
        """Cancels the call if it is still running."""
        self._call.cancel()


class CompletionStream(_StreamView, Iterator[str]):
    """The blocking `AsyncCompletionStream`: `for delta in stream`, same attributes.
    `stream.close()` (or leaving `with stream:`) abandons it early."""

    def __init__(self, client: Client, stream: AsyncCompletionStream) -> None:
        self._client = client
        self._stream = stream
        self._progress = stream._progress

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> str:
        try:
            return self._client._run(self._stream.__anext__())
        except StopAsyncIteration:
            raise StopIteration from None

    def close(self) -> None:
        """Cancels the call if it is still running."""
        self._client._run(self._stream.aclose())

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- the blocking client -------------------------------------------------------------------


def _blocking(
    method: Callable[Concatenate[AsyncClient, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[Client, P], R]:
    """`AsyncClient.method` as a blocking `Client` method (same signature and docstring)."""

    @functools.wraps(method)
    def call(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._run(method(self._async, *args, **kwargs))

    return call


def _blocking_stream(
    method: Callable[Concatenate[AsyncClient, P], Coroutine[Any, Any, AsyncCompletionStream]],
) -> Callable[Concatenate[Client, P], CompletionStream]:
    """`AsyncClient.stream_complete` as a blocking method returning a `CompletionStream`."""

    @functools.wraps(method)
    def call(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> CompletionStream:
        return CompletionStream(self, self._run(method(self._async, *args, **kwargs)))

    call.__signature__ = inspect.signature(method).replace(  # type: ignore[attr-defined]
        return_annotation="CompletionStream"
    )
    call.__doc__ = """`complete`, streamed. Returns once the cache has decided (hit or miss), with
        `.cache` set; iterate it for the text deltas:

            with cache.stream_complete("Explain DNS") as stream:
                for delta in stream:
                    print(delta, end="")
            print(stream.finish_reason, stream.usage, stream.cache.entry_id)

        Same arguments as `AsyncClient.stream_complete`."""
    return call


class Client:
    """The blocking semcache client: `AsyncClient`'s methods with the same signatures and
    results, run on a private event loop in a daemon thread. Thread-safe.

    Use as `with Client(...) as cache:` or call `cache.close()`. The constructor takes
    `AsyncClient`'s arguments except `channel` (a `grpc.aio` channel belongs to one loop).
    Do not call it from a coroutine running the servers it talks to: it blocks that loop.
    """

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        *,
        token: str | None = None,
        tenant: str = "",
        timeout: float | None = 10.0,
        retries: int = 3,
        backoff: float = 0.1,
        max_backoff: float = 2.0,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="semcache-client", daemon=True
        )
        self._thread.start()
        self._closed = False

        async def make() -> AsyncClient:  # the grpc.aio channel must be made on its loop
            return AsyncClient(
                address,
                token=token,
                tenant=tenant,
                timeout=timeout,
                retries=retries,
                backoff=backoff,
                max_backoff=max_backoff,
                credentials=credentials,
            )

        try:
            self._async = self._run(make())
        except BaseException:
            self._stop_loop()
            raise

    @property
    def address(self) -> str:
        return self._async.address

    @property
    def tenant(self) -> str:
        return self._async.tenant

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Closes the channel and stops the private loop. Idempotent."""
        if self._closed:
            return
        try:
            self._run(self._async.aclose())
        finally:
            self._closed = True
            self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def _run(self, coroutine: Coroutine[Any, Any, R]) -> R:
        if self._closed or threading.current_thread() is self._thread:
            coroutine.close()
            raise RuntimeError(
                "the client is closed"
                if self._closed
                else "a blocking Client call on its own loop would deadlock"
            )
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # e.g. KeyboardInterrupt while waiting; a no-op once done
            raise

    lookup = _blocking(AsyncClient.lookup)
    store = _blocking(AsyncClient.store)
    complete = _blocking(AsyncClient.complete)
    invalidate = _blocking(AsyncClient.invalidate)
    feedback = _blocking(AsyncClient.feedback)
    stats = _blocking(AsyncClient.stats)
    ring = _blocking(AsyncClient.ring)

    stream_complete = _blocking_stream(AsyncClient.stream_complete)
