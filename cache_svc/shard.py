"""Shard: one cache shard's behaviour, composed of its parts. Knows nothing of gRPC.

namespace (hydrated from Redis on first use) -> exact map -> embed -> index -> HitPolicy
miss (read-through) -> single-flight -> LLM backend -> Namespace + Redis write-through

When the embedders' model changes, stored prompts are re-embedded in the background at a
bounded rate (`reembed`); each namespace's index moves to the new model once its entries
have (or once its old model is no longer served), and never mixes the two.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from cache_svc import export, metrics
from cache_svc.embedder import EmbedderClient, EmbedderUnavailableError, Vector
from cache_svc.entry import Answer, Entry
from cache_svc.eviction import Eviction
from cache_svc.graphs import GraphSnapshots
from cache_svc.index import IndexParams
from cache_svc.llm import Delta, Done, LLMBackend, LLMRequest, UpstreamError
from cache_svc.metrics import TRACER
from cache_svc.namespace import Namespace
from cache_svc.singleflight import SingleFlight
from cache_svc.store import StoreUnavailableError, WriteThroughStore
from semcache import keys
from semcache.quality.policy import Decision, PolicySet, detect_category
from semcache.runtime import tracing
from semcache.runtime.periodic import Periodic

log = logging.getLogger(__name__)

Status = Literal["hit", "miss", "bypass"]
#: What a store did: a new entry, one replacing an older answer, or none (the same answer
#: was there already).
Stored = Literal["new", "replaced", "unchanged"]
#: Seconds between two rounds of re-embedding (each takes rate x tick prompts).
REEMBED_TICK = 0.5
#: An idle shard asks the embedder for its current model this often (it learns it from
#: every answer otherwise).
MODEL_PROBE_SECONDS = 5.0
#: How often the shard checks that Redis still has what it wrote.
REDIS_CHECK_SECONDS = 1.0
#: How often big namespaces' graphs are checked for enough changes to save them again.
SNAPSHOT_CHECK_SECONDS = 60.0
#: A bulk import's embeddings in flight per shard. An import that sent all it may (256 a
#: stream) to the embedder at once would queue there past the embed timeout: its stores
#: and the lookups beside them would time out, open the circuit and store entries without
#: vectors. Two shards' 16 make about one of the embedder's batches (32 texts).
BULK_EMBEDS = 16


@dataclass(frozen=True, slots=True)
class Query:
    """One Lookup / Complete request, in domain terms."""

    namespace: str
    tenant: str
    prompt: str
    llm: LLMRequest | None = None  # what to ask the LLM on a read-through miss
    category: str = ""
    min_similarity: float | None = None
    no_cache: bool = False
    no_store: bool = False
    max_age: float | None = None
    ttl: float | None = None
    #: The caller's deadline, a `time.monotonic()` instant (None: no deadline).
    deadline: float | None = None
    #: Serialises the request's scope (`semcache.v1.Scope`), kept with the namespace for
    #: export: called once per namespace and process, not on every request. None where
    #: the caller has none to give.
    scope: Callable[[], bytes] | None = None
    #: A store of a bulk import: its embedding waits its turn (`BULK_EMBEDS`).
    bulk: bool = False

    @property
    def prompt_key(self) -> str:
        return keys.prompt_key(self.prompt)


@dataclass(slots=True)
class Outcome:
    status: Status
    kind: Literal["exact", "semantic", ""] = ""
    similarity: float = 0.0
    threshold: float = 0.0
    category: str = ""
    runner_up: float | None = None  # the next-nearest candidate's similarity
    decision: Decision | None = None  # the policy's, when a candidate reached it
    entry: Entry | None = None  # matched (hit) or stored (miss)
    closest_prompt: str = ""
    answer: Answer | None = None
    coalesced: bool = False
    stored: bool = False
    degraded: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds
    vector: Vector | None = None

    def timed(self, stage: str, started: float) -> None:
        elapsed = time.perf_counter() - started
        self.timings[stage] = self.timings.get(stage, 0.0) + elapsed
        metrics.STAGE_SECONDS.labels(stage).observe(elapsed)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Times a stage of the request (its timing, metric and span)."""
        started = time.perf_counter()
        with TRACER.span(name):
            try:
                yield
            finally:
                self.timed(name, started)


class EntryNotFoundError(LookupError):
    pass


@dataclass(frozen=True, slots=True)
class ShardSettings:
    shard_id: str = "shard-0"
    default_ttl: float = 24 * 3600.0
    index: IndexParams = field(default_factory=IndexParams)
    sweep_interval: float = 30.0
    #: Stored prompts re-embedded per second after a model change (0: never).
    reembed_rate: float = 50.0
    #: Namespaces of this many entries or more keep a snapshot of their graph in Redis
    #: (`cache_svc.graphs`); 0: never.
    snapshot_min_entries: int = 10_000


class Shard:
    def __init__(
        self,
        settings: ShardSettings,
        *,
        embedder: EmbedderClient,
        store: WriteThroughStore,
        llm: LLMBackend,
        policies: PolicySet,
        eviction: Eviction,
    ) -> None:
        self.settings = settings
        self.embedder = embedder
        self.store = store
        self.llm = llm
        self.policies = policies
        self.eviction = eviction
        self._namespaces: dict[str, Namespace] = {}
        self._unhydrated: set[str] = set()  # created while Redis was down
        self._hydrations: SingleFlight[str, Namespace] = SingleFlight()
        self._flights: SingleFlight[tuple[str, str], Answer] = SingleFlight()
        self._background: set[asyncio.Task[object]] = set()
        self._bulk_embeds = asyncio.Semaphore(BULK_EMBEDS)
        self.counters = {
            name: 0
            for name in (
                "lookups",
                "hits",
                "exact_hits",
                "semantic_hits",
                "misses",
                "coalesced",
                "evictions",
                "wrong_hits",
                "reembedded",
                "redis_written_back",
            )
        }
        self._reembedder = Periodic(self._reembed_step, REEMBED_TICK, "reembed")
        self._redis_watch = Periodic(self._check_redis, REDIS_CHECK_SECONDS, "redis watch")
        self._sweeper = Periodic(self.sweep_expired, settings.sweep_interval, "ttl sweep")
        self.graphs = GraphSnapshots(store, settings.index, settings.snapshot_min_entries)
        self._snapshotter = Periodic(
            lambda: self.graphs.save_changed(list(self._namespaces.values())),
            SNAPSHOT_CHECK_SECONDS,
            "graph snapshots",
        )

    @property
    def shard_id(self) -> str:
        return self.settings.shard_id

    async def start(self) -> None:
        await self.store.start()
        self._sweeper.start()
        if self.settings.reembed_rate > 0:
            self._reembedder.start()
        if self.store.state != "disabled":
            self._redis_watch.start()
            self._snapshotter.start()

    async def aclose(self) -> None:
        await self._snapshotter.stop()
        await self._reembedder.stop()
        await self._redis_watch.stop()
        await self._sweeper.stop()
        for task in list(self._background):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.store.aclose()
        await self.embedder.aclose()
        await self.llm.aclose()

    def _spawn(self, coroutine: Coroutine[Any, Any, object]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- namespaces ---------------------------------------------------------------------

    async def namespace(self, key: str) -> Namespace:
        """The namespace, hydrated from Redis the first time (one load for all callers)."""
        ns = self._namespaces.get(key)
        if ns is not None and not (key in self._unhydrated and self.store.state == "up"):
            return ns
        ns, _ = await self._hydrations.run(key, lambda: self._hydrate(key))
        return ns

    async def _hydrate(self, key: str) -> Namespace:
        with TRACER.span("hydrate", {"namespace": key}):
            ns = self._namespaces.get(key)
            try:
                if ns is None:
                    return await self._load(key)
                entries = await self.store.load_namespace(key, time.time())
            except StoreUnavailableError:
                if ns is None:
                    ns = Namespace(key, self.settings.index, self._model_for([]))
                    self._namespaces[key] = ns
                    self._unhydrated.add(key)
                    metrics.NAMESPACES.set(len(self._namespaces))
                return ns
            # Made while Redis was down: merge what Redis had.
            for entry in entries:
                if ns.get(entry.id) is None and ns.exact(entry.prompt_key, time.time()) is None:
                    ns.add(entry)
                    self.eviction.added(entry.id, entry.size_bytes)
            return self._loaded(ns)

    async def _load(self, key: str) -> Namespace:
        """A namespace not in memory, from Redis: from its graph's snapshot when it has one
        of the model its entries are of, else by a bulk load whose graph builds off the
        loop (searching exactly meanwhile). Raises StoreUnavailableError."""
        manifest = await self.graphs.manifest(key)
        entries = await self.store.load_namespace(key, time.time())
        ns = Namespace(key, self.settings.index, self._model_for(entries))
        if (
            manifest is None
            or manifest.model != ns.model
            or not await self.graphs.restore(ns, entries, manifest)
        ):
            ns.load(entries)
            if ns.index.building:  # exact search now; the graph builds off the loop
                self._spawn(self.graphs.build(ns))
        for entry in ns:
            self.eviction.added(entry.id, entry.size_bytes)
        ns.loaded_at = time.monotonic()  # after the load: a long one is no stall
        self._namespaces[key] = ns
        log.info("hydrated", extra={"namespace": key, "entries": len(ns)})
        return self._loaded(ns)

    def _loaded(self, ns: Namespace) -> Namespace:
        self._unhydrated.discard(ns.key)
        self._update_gauges()
        self._evict_over_capacity()
        return ns

    # -- models ---------------------------------------------------------------------------

    def _model_for(self, entries: list[Entry]) -> str:
        """The model a (re)loaded namespace's index starts in: the embedders' current one
        when some entries are in it already or none have vectors, else the most common."""
        target = self.embedder.models.target(time.monotonic())
        counts: dict[str, int] = {}
        for entry in entries:
            if entry.vector is not None:
                counts[entry.model] = counts.get(entry.model, 0) + 1
        if target in counts or not counts:
            return target
        return max(counts, key=lambda m: counts[m])

    def _adopt(self, ns: Namespace, vector: Vector) -> None:
        """A namespace with nothing searchable takes the model of the vector at hand."""
        if vector.model != ns.model and len(ns.index) == 0:
            self._switch(ns, vector.model)

    def _switch(self, ns: Namespace, model: str) -> None:
        moved_from = ns.model
        ns.switch_model(model)
        if ns.index.building:
            self._spawn(self.graphs.build(ns))
        if moved_from:  # a new namespace taking its first model is not news
            log.info(
                "namespace index moved to a new model",
                extra={"namespace": ns.key, "model": model, "from": moved_from},
            )

    async def reembed(self, budget: int) -> int:
        """Re-embeds up to `budget` stored prompts whose vectors are not of the embedders'
        current model, or that have none (stored while the embedder was unavailable), in
        memory and in Redis, and moves each namespace's index to that
        model once all its entries are, or once its old model is no longer served.
        Returns how many prompts it re-embedded."""
        now = time.monotonic()
        target = self.embedder.models.target(now)
        if not target:
            return 0
        done = 0
        for ns in list(self._namespaces.values()):
            for entry in ns.not_of(target)[: budget - done]:
                try:
                    vector = await self.embedder.embed(entry.prompt, target)
                except EmbedderUnavailableError:
                    return done
                if vector.model != target:  # answered by a server without it: later
                    return done
                ns.revector(entry, vector.values, vector.model)
                await self.store.revector(entry)
                done += 1
                self.counters["reembedded"] += 1
                metrics.REEMBEDDED.inc()
            done_here = not ns.count_not_of(target)
            if ns.model != target and (done_here or not self.embedder.models.served(ns.model, now)):
                self._switch(ns, target)
            if done >= budget:
                break
        return done

    async def _reembed_step(self) -> None:
        await self.embedder.refresh_models(quiet_for=MODEL_PROBE_SECONDS)
        await self.reembed(max(1, round(self.settings.reembed_rate * REEMBED_TICK)))
        metrics.REEMBED_PENDING.set(self.reembed_pending())

    def reembed_pending(self) -> int:
        """Stored prompts (in memory) whose vectors are not of the embedders' current model."""
        target = self.embedder.models.target(time.monotonic())
        if not target:
            return 0
        return sum(ns.count_not_of(target) for ns in self._namespaces.values())

    # -- look-aside ---------------------------------------------------------------------

    async def lookup(self, query: Query) -> Outcome:
        started = time.perf_counter()
        ns = await self.namespace(query.namespace)
        category = query.category or detect_category(query.prompt)
        policy = self.policies.for_model(ns.model)
        threshold = policy.threshold_for(category, query.tenant, query.min_similarity)
        outcome = Outcome(status="bypass", threshold=threshold, category=category)
        if self.store.state == "down":
            outcome.degraded.append("redis_unavailable")
        if query.no_cache:
            self._count(outcome)
            outcome.timed("total", started)
            return outcome
        now = time.time()
        with TRACER.span("exact"):
            exact = ns.exact(query.prompt_key, now)
        if exact is not None and self._fresh(exact, query, now):
            self._hit(outcome, exact, "exact", 1.0)
        else:
            await self._semantic(ns, query, outcome, now)
        self._count(outcome)
        outcome.timed("total", started)
        return outcome

    async def _semantic(self, ns: Namespace, query: Query, outcome: Outcome, now: float) -> None:
        outcome.status = "miss"
        try:
            with outcome.stage("embed"):
                vector = outcome.vector = await self.embedder.embed(
                    query.prompt, ns.model, query.deadline
                )
        except EmbedderUnavailableError:
            outcome.degraded.append("embedder_unavailable")
            return
        self._adopt(ns, vector)
        with outcome.stage("search"):
            candidates = ns.nearest(vector.values, vector.model, now)
            tracing.annotate(candidates=len(candidates), entries=len(ns))
        if not candidates:
            return
        best = candidates[0]
        metrics.BEST_SIMILARITY.observe(best.similarity)
        outcome.similarity = best.similarity
        outcome.closest_prompt = best.entry.prompt
        outcome.runner_up = candidates[1].similarity if len(candidates) > 1 else None
        with TRACER.span("policy"):
            decision = outcome.decision = self.policies.for_model(vector.model).decide(
                query.prompt,
                best.entry.prompt,
                best.similarity,
                second=outcome.runner_up,
                category=outcome.category,
                tenant=query.tenant,
                min_similarity=query.min_similarity,
            )
            tracing.annotate(
                similarity=best.similarity, hit=decision.hit, guard=decision.guard or "none"
            )
        outcome.threshold = decision.threshold
        if decision.hit and self._fresh(best.entry, query, now):
            self._hit(outcome, best.entry, "semantic", best.similarity)

    @staticmethod
    def _fresh(entry: Entry, query: Query, now: float) -> bool:
        return query.max_age is None or now - entry.created <= query.max_age

    def _hit(
        self, outcome: Outcome, entry: Entry, kind: Literal["exact", "semantic"], similarity: float
    ) -> None:
        outcome.status, outcome.kind = "hit", kind
        outcome.similarity, outcome.entry, outcome.answer = similarity, entry, entry.answer
        outcome.closest_prompt = entry.prompt
        entry.hits += 1
        self.eviction.used(entry.id)
        self.store.record_hit(entry)

    def _count(self, outcome: Outcome) -> None:
        self.counters["lookups"] += 1
        if outcome.status == "hit":
            self.counters["hits"] += 1
            self.counters[f"{outcome.kind}_hits"] += 1
        elif outcome.status == "miss":
            self.counters["misses"] += 1
        metrics.LOOKUPS.labels(outcome.status, outcome.kind or "none").inc()

    async def store_answer(
        self,
        query: Query,
        answer: Answer,
        vector: Vector | None = None,
        degraded: list[str] | None = None,
    ) -> tuple[Entry, Stored]:
        """Stores `answer` for the query's prompt; returns the entry and what was done.

        The same prompt with the same answer and category keeps its entry (its expiry moved
        to the later of the two): storing it again, as a re-run import does, embeds and
        doubles nothing. Without a vector it embeds the prompt, unless `degraded` already
        says the embedder is unavailable (then the entry is matched exactly until stored
        again).
        """
        ns = await self.namespace(query.namespace)
        now = time.time()
        category = query.category or detect_category(query.prompt)
        expires = now + (query.ttl or self.settings.default_ttl)
        same = ns.exact(query.prompt_key, now)
        if (
            same is not None
            and same.vector is not None
            and (same.prompt, same.answer, same.category) == (query.prompt, answer, category)
        ):
            if expires > same.expires:
                same.expires = expires
                await self.store.put(same)
            await self._save_scope(ns, query.scope)
            return same, "unchanged"
        if vector is None and "embedder_unavailable" not in (degraded or []):
            try:
                async with self._bulk_embeds if query.bulk else contextlib.nullcontext():
                    with TRACER.span("embed"):
                        vector = await self.embedder.embed(query.prompt, ns.model, query.deadline)
            except EmbedderUnavailableError:
                if degraded is not None:
                    degraded.append("embedder_unavailable")  # stored for exact matching only
        if vector is not None:
            self._adopt(ns, vector)
        entry = Entry(
            id=keys.new_entry_id(query.namespace),
            namespace=query.namespace,
            tenant=query.tenant,
            prompt=query.prompt,
            prompt_key=query.prompt_key,
            answer=answer,
            category=category,
            created=now,
            expires=expires,
            vector=vector.values if vector else None,
            model=vector.model if vector else "",
        )
        neighbours = self._neighbours(ns, entry, query.tenant, now)
        replaced = ns.add(entry)
        self.eviction.added(entry.id, entry.size_bytes, neighbours)
        if replaced is not None:
            self.eviction.removed(replaced.id)
        await self.store.put(entry)
        if replaced is not None:
            await self.store.delete(query.namespace, [replaced.id])
        await self._save_scope(ns, query.scope)
        self._evict_over_capacity()
        self._update_gauges()
        return entry, "new" if replaced is None else "replaced"

    async def _save_scope(self, ns: Namespace, scope: Callable[[], bytes] | None) -> None:
        """Keeps the namespace's scope in Redis, once per namespace and process: every scope
        of a namespace is the same one (its key hashes it), and every put extends its life
        to its entry's."""
        if scope is not None and ns.scope is None:
            ns.scope = scope()
            expires = max((e.expires for e in ns), default=time.time())
            await self.store.save_scope(ns.key, ns.scope, expires)

    def _neighbours(self, ns: Namespace, entry: Entry, tenant: str, now: float) -> list[str]:
        """The cached entries the hit policy would serve for `entry`'s prompt (its
        duplicates), for an eviction policy that weighs them (one search; none otherwise)."""
        if entry.vector is None or not self.eviction.uses_neighbours:
            return []
        policy = self.policies.for_model(entry.model)
        return [
            c.entry.id
            for c in ns.nearest(entry.vector, entry.model, now)
            if policy.decide(
                entry.prompt, c.entry.prompt, c.similarity, category=entry.category, tenant=tenant
            ).hit
        ]

    # -- read-through -------------------------------------------------------------------

    async def complete(self, query: Query) -> Outcome:
        started = time.perf_counter()
        outcome = await self.lookup(query)
        if outcome.status == "hit":
            return outcome

        async def call_llm() -> Answer:
            async for _ in self._read_through(query, outcome):
                pass
            assert outcome.answer is not None
            return outcome.answer

        flight = (query.namespace, query.prompt_key)
        if query.no_cache:
            # A caller who skips the cache gets its own answer: the request may differ in
            # what the key does not cover (an image part, say), so no sharing in flight.
            outcome.answer = await call_llm()
        else:
            outcome.answer, outcome.coalesced = await self._flights.run(flight, call_llm)
        if outcome.coalesced:
            self.counters["coalesced"] += 1
            metrics.COALESCED.inc()
        outcome.timings["total"] = time.perf_counter() - started
        return outcome

    async def _read_through(self, query: Query, outcome: Outcome) -> AsyncIterator[Delta]:
        """The LLM's answer to a miss, its deltas yielded live; once it has ended,
        `outcome.answer` is set and the answer stored (unless no_store). The one home of the
        LLM call, its metrics and the llm and store timings, for Complete and its stream."""
        assert query.llm is not None, "read-through needs an LLM request"
        chunks: list[str] = []
        started = time.perf_counter()
        try:
            with TRACER.span("llm", {"model": query.llm.model}):
                async for event in self.llm.stream(query.llm):
                    if isinstance(event, Delta):
                        chunks.append(event.text)
                        yield event
                    else:
                        outcome.answer = Answer(
                            "".join(chunks), tuple(chunks), event.finish_reason, event.usage
                        )
                if outcome.answer is None:
                    raise UpstreamError(0, "the stream ended without finishing")
        except Exception:
            metrics.LLM_CALLS.labels("error").inc()
            raise
        metrics.LLM_CALLS.labels("ok").inc()
        outcome.timed("llm", started)
        if not query.no_store:
            with outcome.stage("store"):
                outcome.entry, _ = await self.store_answer(
                    query, outcome.answer, outcome.vector, outcome.degraded
                )
                outcome.stored = True

    async def stream_complete(self, query: Query) -> AsyncIterator[Outcome | Delta | Done]:
        """Yields the lookup Outcome, the answer's Deltas, a Done, then the final Outcome.

        A hit replays the stored chunks. A miss streams from the LLM live and stores the
        answer only once the stream has completed: a caller that goes away or an upstream
        that breaks leaves nothing behind. A miss that finds a Complete call for the same
        prompt already in flight waits for it and replays its answer (coalesced).
        """
        started = time.perf_counter()
        outcome = await self.lookup(query)
        yield outcome
        flight = (query.namespace, query.prompt_key)
        if outcome.status == "hit":
            pass
        elif not query.no_cache and self._flights.in_flight(flight):
            outcome.answer, outcome.coalesced = await self._flights.run(flight, _never)
            self.counters["coalesced"] += 1
            metrics.COALESCED.inc()
        else:
            async for delta in self._read_through(query, outcome):
                yield delta
        assert outcome.answer is not None
        if outcome.status == "hit" or outcome.coalesced:
            for chunk in outcome.answer.replay_chunks():
                yield Delta(chunk)
        yield Done(outcome.answer.finish_reason, outcome.answer.usage)
        outcome.timings["total"] = time.perf_counter() - started
        yield outcome

    def export(self, selection: export.Selection) -> AsyncIterator[export.Batch]:
        """The selected live entries, in batches (`cache_svc.export`). Raises
        StoreUnavailableError while Redis is down."""
        return export.batches(self.store, self._namespaces, selection)

    # -- removal ------------------------------------------------------------------------

    def _forget(self, ns: Namespace, entry_ids: list[str], reason: str) -> list[str]:
        """Removes entries from memory (index, exact map, eviction); returns the ids removed."""
        removed = [e.id for e in (ns.remove(i) for i in entry_ids) if e is not None]
        for entry_id in removed:
            self.eviction.removed(entry_id)
        if reason != "invalidate":
            metrics.EVICTIONS.labels(reason).inc(len(removed))
        self._update_gauges()
        return removed

    async def _remove(self, ns: Namespace, entry_ids: list[str], reason: str) -> int:
        """Removes entries from memory and Redis together."""
        removed = self._forget(ns, entry_ids, reason)
        await self.store.delete(ns.key, removed)
        return len(removed)

    async def entry(self, entry_id: str, tenant: str) -> Entry:
        key = keys.namespace_of(entry_id)
        ns = await self.namespace(key)
        entry = ns.get(entry_id)
        if entry is None and len(ns) == 0 and not self._flights_for(key):
            # An unknown id must not leave an empty namespace (and its index) behind.
            self._namespaces.pop(key, None)
            self._unhydrated.discard(key)
            self._update_gauges()
        if entry is None or entry.tenant != tenant:  # another tenant's id: as if absent
            raise EntryNotFoundError(f"entry_id: no entry {entry_id} for tenant {tenant!r}")
        return entry

    def release(self, owned: Callable[[str], bool]) -> int:
        """Drops from memory (never from Redis) the namespaces `owned` says are another
        shard's now; returns how many (`drop_copies` says which it keeps)."""
        copies = {key for key in self._namespaces if not owned(key)}
        return len(copies) - len(self.drop_copies(copies))

    def drop_copies(self, keys: set[str]) -> set[str]:
        """Drops the namespaces `keys` from memory (never from Redis): they hydrate again on
        their next call. Returns those it keeps, as only this shard may hold what is in
        them: namespaces with a call in flight, those created while Redis was away, and all
        while Redis is away (their writes may still be queued)."""
        held = keys & self._namespaces.keys()
        if self.store.state != "up":
            return held
        kept = set()
        for key in held:
            if key in self._unhydrated or self._flights_for(key):
                kept.add(key)
                continue
            ns = self._namespaces.pop(key)
            self._forget(ns, [e.id for e in ns], "released")
        self._update_gauges()
        return kept

    def loaded_before(self, instant: float) -> set[str]:
        """The namespaces held in memory since before `instant` (`time.monotonic()`)."""
        return {key for key, ns in self._namespaces.items() if ns.loaded_at < instant}

    def _flights_for(self, key: str) -> bool:
        return any(flight[0] == key for flight in self._flights.in_flight_keys())

    async def invalidate_entry(self, entry_id: str, tenant: str) -> int:
        entry = await self.entry(entry_id, tenant)
        return await self._remove(self._namespaces[entry.namespace], [entry.id], "invalidate")

    async def invalidate_namespace(self, key: str) -> int:
        ns = await self.namespace(key)
        removed = await self._remove(ns, [e.id for e in ns], "invalidate")
        await self.store.drop_namespace(key)  # also what this shard never loaded
        return removed

    async def invalidate_tenant(self, tenant: str) -> int:
        """Every namespace of the tenant: in memory here, and in Redis.

        Returns the entries removed from this shard's memory. Namespaces this shard does
        not hold are dropped from Redis without loading them (the router sends a tenant
        invalidation to every shard, so each counts what it held).
        """
        held = sorted(
            key for key, ns in self._namespaces.items() if any(e.tenant == tenant for e in ns)
        )
        removed = 0
        for key in held:
            removed += await self.invalidate_namespace(key)
        # When Redis is down, namespaces this shard never loaded stay there until a retry.
        with contextlib.suppress(StoreUnavailableError):
            for key in await self.store.namespaces_of_tenant(tenant):
                if key not in self._namespaces:
                    await self.store.drop_namespace(key)
        return removed

    async def wrong_hit(self, entry_id: str, tenant: str) -> bool:
        entry = await self.entry(entry_id, tenant)
        self.counters["wrong_hits"] += 1
        metrics.WRONG_HITS.inc()
        log.info("wrong hit reported", extra={"entry": entry_id, "namespace": entry.namespace})
        return await self._remove(self._namespaces[entry.namespace], [entry.id], "feedback") > 0

    def _evict_over_capacity(self) -> None:
        by_namespace: dict[str, list[str]] = {}
        for entry_id in self.eviction.victims():
            by_namespace.setdefault(keys.namespace_of(entry_id), []).append(entry_id)
        for key, ids in by_namespace.items():
            ns = self._namespaces[key]
            removed = self._forget(ns, ids, "capacity")  # now, so the next add sees the room
            self.counters["evictions"] += len(removed)
            self._spawn(self.store.delete(key, removed))

    async def sweep_expired(self) -> int:
        now, swept = time.time(), 0
        for ns in list(self._namespaces.values()):
            if expired := ns.expired(now):
                swept += await self._remove(ns, expired, "ttl")
        return swept

    async def _check_redis(self) -> None:
        if await self.store.lost_writes():
            await self.write_back()

    async def write_back(self) -> int:
        """Writes every live entry held in memory to Redis again (Redis lost them: it came
        back empty); returns how many. Entries no shard holds are lost with Redis."""
        now = time.time()
        entries = [e for ns in list(self._namespaces.values()) for e in ns if not e.expired(now)]
        log.warning(
            "redis lost its data; writing back what this shard holds",
            extra={"entries": len(entries)},
        )
        await self.store.put_many(entries)
        for ns in list(self._namespaces.values()):
            if ns.scope is not None and len(ns):
                await self.store.save_scope(ns.key, ns.scope, max(e.expires for e in ns))
        self.counters["redis_written_back"] += len(entries)
        metrics.REDIS_WRITTEN_BACK.inc(len(entries))
        return len(entries)

    def _update_gauges(self) -> None:
        metrics.ENTRIES.set(self.eviction.entries)
        metrics.BYTES.set(self.eviction.bytes)
        metrics.NAMESPACES.set(len(self._namespaces))

    def stats(self) -> dict[str, object]:
        return {
            **self.counters,
            "entries": self.eviction.entries,
            "bytes": self.eviction.bytes,
            "namespaces": len(self._namespaces),
            "redis_state": self.store.state,
            "redis_backlog": self.store.backlog,
            "embedder_state": self.embedder.state,
            "model": self.embedder.models.target(time.monotonic()),
            "reembed_pending": self.reembed_pending(),
        }


async def _never() -> Answer:
    raise RuntimeError("joined a flight that had already ended")
