"""WriteThroughStore: every entry also lands in Redis, the source of truth for hydration.

Layout (the `{ns}` hash tag keeps a namespace in one Redis Cluster slot):

    semcache:{<ns>}:e:<entry id>   hash: id, tenant, prompt, prompt_key, answer (JSON),
                                    category, created, expires, hits, vector (float32 LE)
                                    with a Redis expiry at `expires`
    semcache:{<ns>}:ids            set of the namespace's entry ids
    semcache:{<ns>}:scope          the scope its entries were stored in (a serialised
                                    `semcache.v1.Scope`, for export), expiring with the
                                    namespace's last entry
    semcache:{<ns>}:dropped:<uuid> the ids of a namespace being dropped (renamed from :ids)
    semcache:{<ns>}:graph          hash: the namespace's graph snapshot (version, model,
                                    chunks, graph_bytes, entries: `cache_svc.snapshot`)
    semcache:{<ns>}:graph:<version>:<i>  its chunks
    semcache:tenant:<tenant>       set of the tenant's namespace keys (pruned when read)

On Redis Cluster (`cluster=True`) every command that touches several keys, or a script,
stays within one namespace's slot; a pipeline's commands for different slots go to their
nodes in one round trip each.

A write is applied at once (pipelined) while Redis is up, so a caller that got an answer
has it in Redis. Hits are the exception: they are counted in memory and written together
every `HIT_FLUSH_SECONDS` (a Redis write per hit, with its task and round trip on the
shard's loop, was a measurable share of every hit's cost under load); a crash loses at most
that long's counts, which only rank entries for eviction.

When Redis fails or is slow, the write is queued instead (bounded; what does not fit is
counted as dropped, and the entry still lives in memory), the store turns "down", and a
background task probes Redis and flushes the queue in order once it is back.

A Redis that comes back empty (restarted without persistence, failed over to an empty
replica, flushed) is noticed by a marker key each store writes (`lost_writes`): the shard
then writes back what it holds in memory (`put_many`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import uuid
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from redis.exceptions import ResponseError

from cache_svc import metrics
from cache_svc.entry import Entry
from cache_svc.snapshot import GraphManifest, Membership
from semcache.runtime import redisclient
from semcache.runtime.periodic import Periodic, cancel_and_wait

log = logging.getLogger(__name__)

State = Literal["up", "down", "disabled"]
_FAILURES = redisclient.FAILURES
_LOAD_CHUNK = 1000
#: Connections to Redis per shard; more concurrent writes wait for one.
MAX_CONNECTIONS = 64
#: How often counted hits are written to Redis.
HIT_FLUSH_SECONDS = 1.0
#: The marker's lifetime, renewed at every check: markers of stores gone away expire.
MARKER_SECONDS = 3600
#: A graph snapshot's chunks (a few round trips each, never one huge command).
SNAPSHOT_CHUNK_BYTES = 8 * 1024 * 1024
#: A snapshot outlives its last renewal this long: namespaces idle longer rebuild.
SNAPSHOT_SECONDS = 7 * 24 * 3600
#: Switches a namespace's snapshot to a new version; returns the old version and chunks.
_SWITCH_SNAPSHOT = """
local old = redis.call('HMGET', KEYS[1], 'version', 'chunks')
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('EXPIRE', KEYS[1], ARGV[1])
return old
"""
#: Reads each hash of KEYS (one namespace's entries: one slot) in one command: a
#: pipeline of single HGETALLs spends most of a hydration packing and parsing commands.
_HGETALL_MANY = """
local out = {}
for i, key in ipairs(KEYS) do out[i] = redis.call('HGETALL', key) end
return out
"""
#: How long the ids of a dropped namespace are kept should the shard die while deleting
#: its entries (they expire by themselves; the ids only say which to delete).
DROPPED_IDS_SECONDS = 24 * 3600


def _text(value: bytes | str) -> str:
    """A Redis reply as text (the store's client answers bytes)."""
    return value.decode() if isinstance(value, bytes) else value


@contextlib.contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """No cyclic garbage collection meanwhile: decoding a million entries allocates
    millions of objects, which triggers collections that each walk every object alive
    (entries hold no cycles; reference counting frees them). `bench scale`: a quarter of
    a hydration's time at 100,000 entries, more the bigger the namespace."""
    paused = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


class StoreUnavailableError(Exception):
    """Redis cannot be read right now."""


def entry_key(namespace: str, entry_id: str) -> str:
    return f"semcache:{{{namespace}}}:e:{entry_id}"


def ids_key(namespace: str) -> str:
    return f"semcache:{{{namespace}}}:ids"


def dropped_ids_key(namespace: str) -> str:
    return f"semcache:{{{namespace}}}:dropped:{uuid.uuid4().hex}"


def graph_key(namespace: str) -> str:
    return f"semcache:{{{namespace}}}:graph"


def graph_chunk_key(namespace: str, version: str, chunk: int) -> str:
    return f"semcache:{{{namespace}}}:graph:{version}:{chunk}"


def scope_key(namespace: str) -> str:
    return f"semcache:{{{namespace}}}:scope"


_TENANT_PREFIX = "semcache:tenant:"


def tenant_key(tenant: str) -> str:
    return f"{_TENANT_PREFIX}{tenant}"


@dataclass(frozen=True, slots=True)
class _Put:
    entry: Entry


@dataclass(frozen=True, slots=True)
class _Revector:
    entry: Entry


@dataclass(frozen=True, slots=True)
class _Delete:
    namespace: str
    ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Hit:
    namespace: str
    entry_id: str
    expires: float
    count: int


@dataclass(frozen=True, slots=True)
class _DropNamespace:
    namespace: str


@dataclass(frozen=True, slots=True)
class _Scope:
    namespace: str
    scope: bytes
    expires: float


_Op = _Put | _Revector | _Delete | _Hit | _DropNamespace | _Scope


class WriteThroughStore:
    def __init__(
        self,
        url: str | None,
        *,
        cluster: bool = False,
        max_backlog: int = 100_000,
        write_timeout: float = 1.0,
        retry_interval: float = 0.5,
    ) -> None:
        self.url = url
        self.cluster = cluster
        self.max_backlog = max_backlog
        self.write_timeout = write_timeout
        self.retry_interval = retry_interval
        self.state: State = "disabled" if url is None else "down"
        self._client: redisclient.Client | None = None
        # Writes in flight at once: within the connections of each server (a cluster node
        # refuses one past its limit rather than wait).
        self._writers = asyncio.Semaphore(MAX_CONNECTIONS // 2)
        self._backlog: deque[_Op] = deque()
        self._wake = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._hits: dict[tuple[str, str], tuple[int, float]] = {}  # -> (count, expires)
        self._hit_writer = Periodic(self.write_hits, HIT_FLUSH_SECONDS, "hit writer")
        self.dropped = 0
        self._marker = f"semcache:marker:{uuid.uuid4().hex}"
        self._marked = False
        self._primaries: frozenset[str] | None = None  # a cluster's masters, last seen

    @property
    def backlog(self) -> int:
        return len(self._backlog)

    async def start(self) -> None:
        if self.url is None:
            log.warning("no Redis configured: running memory-only, entries die with the shard")
            return
        self._client = redisclient.connect(
            self.url,
            cluster=self.cluster,
            timeout=self.write_timeout,
            max_connections=MAX_CONNECTIONS,
        )
        try:
            with redisclient.closed_connections():
                await self._client.ping()
                self._set_state("up")
                await self.lost_writes()  # writes the marker
        except _FAILURES as e:
            self._set_state("down", e)
        self._flusher = asyncio.create_task(self._flush_forever(), name="redis-flusher")
        self._hit_writer.start()

    async def aclose(self) -> None:
        await self._hit_writer.stop()
        if self._flusher is not None:
            await cancel_and_wait(self._flusher)
        if self._client is not None:
            self._backlog.extend(self._take_hits())
            with contextlib.suppress(*_FAILURES), redisclient.closed_connections():
                await self._flush_backlog()  # a last chance for queued writes
            await self._client.aclose()

    def _set_state(self, state: State, error: BaseException | None = None) -> None:
        if state != self.state:
            log.warning(
                "redis %s",
                state,
                extra={"error": repr(error) if error else None, "backlog": self.backlog},
            )
        self.state = state
        metrics.REDIS_UP.set(1 if state == "up" else 0)
        if state == "down":
            self._wake.set()

    # -- writes -------------------------------------------------------------------------

    async def put(self, entry: Entry) -> None:
        await self._submit(_Put(entry))

    async def put_many(self, entries: list[Entry]) -> None:
        """Writes the entries (again), `_LOAD_CHUNK` to a round trip."""
        for start in range(0, len(entries), _LOAD_CHUNK):
            chunk = entries[start : start + _LOAD_CHUNK]
            await asyncio.shield(self._write([_Put(entry) for entry in chunk]))

    async def lost_writes(self) -> bool:
        """True when Redis may have lost what this store wrote since the last call that
        answered: the marker key the store keeps there is gone (then it is written again),
        or a cluster's masters changed (a replica promoted after a master failed has only
        what had reached it: acknowledged writes of the last moments may be missing).
        False while Redis is away, and on the first call (which writes the marker)."""
        if self.state != "up" or self._client is None:
            return False
        try:
            with redisclient.closed_connections():
                failed_over = self._failed_over(await redisclient.primaries(self._client))
                if await self._client.expire(self._marker, MARKER_SECONDS):
                    return failed_over
                await self._client.set(self._marker, "1", ex=MARKER_SECONDS)
        except _FAILURES:
            return False
        lost, self._marked = self._marked, True
        return lost or failed_over

    def _failed_over(self, primaries: frozenset[str] | None) -> bool:
        """Records the masters seen; True when they differ from those seen before."""
        if not primaries:
            return False  # standalone, or a cluster with no master serving: nothing to say
        before, self._primaries = self._primaries, primaries
        if before is not None and before != primaries:
            log.warning(
                "redis cluster masters changed (a failover)",
                extra={"gone": sorted(before - primaries), "new": sorted(primaries - before)},
            )
            return True
        return False

    async def revector(self, entry: Entry) -> None:
        """Writes the entry's new vector and its model id (a re-embedding), nothing else."""
        await self._submit(_Revector(entry))

    async def delete(self, namespace: str, ids: list[str]) -> None:
        if ids:
            for entry_id in ids:  # a later hit write would leave a stray counter behind
                self._hits.pop((namespace, entry_id), None)
            await self._submit(_Delete(namespace, tuple(ids)))

    def record_hit(self, entry: Entry) -> None:
        """Counts a hit; the count reaches Redis with the next hit write."""
        if self.state == "disabled":
            return
        key = (entry.namespace, entry.id)
        count, _ = self._hits.get(key, (0, 0.0))
        self._hits[key] = (count + 1, entry.expires)

    async def drop_namespace(self, namespace: str) -> None:
        self._hits = {k: v for k, v in self._hits.items() if k[0] != namespace}
        await self._submit(_DropNamespace(namespace))

    async def save_scope(self, namespace: str, scope: bytes, expires: float) -> None:
        """Keeps the namespace's scope until `expires` (its last entry's expiry: every put
        of a later one extends it)."""
        await self._submit(_Scope(namespace, scope, expires))

    async def _submit(self, op: _Op) -> None:
        # A caller that goes away mid-write must not leave memory and Redis apart: the
        # write completes (or is queued) regardless.
        await asyncio.shield(self._write([op]))

    async def _write(self, ops: list[_Op]) -> None:
        if self.state == "disabled":
            return
        if self.state == "up" and not self._backlog:
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can drop a cancellation
                # (semcache.runtime.periodic says how).
                async with self._writers, asyncio.timeout(self.write_timeout):
                    await redisclient.io(self._apply(ops))
                return
            except _FAILURES as e:
                metrics.REDIS_ERRORS.inc()
                self._set_state("down", e)
        room = max(0, self.max_backlog - len(self._backlog))
        if len(ops) > room:
            self.dropped += len(ops) - room
            metrics.REDIS_DROPPED.inc(len(ops) - room)
        self._backlog.extend(ops[:room])
        metrics.REDIS_BACKLOG.set(len(self._backlog))
        self._wake.set()

    def _take_hits(self) -> list[_Op]:
        hits, self._hits = self._hits, {}
        return [
            _Hit(ns, entry_id, expires, count) for (ns, entry_id), (count, expires) in hits.items()
        ]

    async def write_hits(self) -> None:
        """Writes the counted hits, if Redis is up. While it is away they keep adding up
        here (one count per entry), not in the bounded backlog, where they would crowd out
        the writes that matter."""
        if self._hits and self.state == "up" and not self._backlog:
            await self._write(self._take_hits())

    async def _apply(self, ops: list[_Op]) -> None:
        assert self._client is not None
        # Commands of one namespace keep their order: they share a slot, hence a node and
        # its connection, so an entry's hash is written before its id joins the ids set.
        pipe = self._client.pipeline(transaction=False)
        for op in ops:
            match op:
                case _Put(entry):
                    key = entry_key(entry.namespace, entry.id)
                    pipe.hset(key, mapping=entry.to_redis())  # type: ignore[arg-type]
                    pipe.pexpireat(key, int(entry.expires * 1000))
                    pipe.sadd(ids_key(entry.namespace), entry.id)
                    pipe.sadd(tenant_key(entry.tenant), entry.namespace)
                    # GT: only ever later (and a no-op until the scope is saved).
                    pipe.pexpireat(scope_key(entry.namespace), int(entry.expires * 1000), gt=True)
                case _Revector(entry) if entry.vector is not None:
                    key = entry_key(entry.namespace, entry.id)
                    vector = entry.vector.astype("<f4", copy=False).tobytes()
                    pipe.hset(key, mapping={"vector": vector, "model": entry.model})
                    # An entry deleted meanwhile leaves a partial hash: it expires with the
                    # entry and loading skips it (no id).
                    pipe.pexpireat(key, int(entry.expires * 1000))
                case _Delete(namespace, ids):
                    pipe.delete(*(entry_key(namespace, i) for i in ids))
                    pipe.srem(ids_key(namespace), *ids)
                case _Hit(namespace, entry_id, expires, count):
                    key = entry_key(namespace, entry_id)
                    pipe.hincrby(key, "hits", count)
                    pipe.pexpireat(key, int(expires * 1000))  # never leaves a key undying
                case _DropNamespace(namespace):
                    await pipe.execute()
                    await self._drop(namespace)
                case _Scope(namespace, scope, expires):
                    pipe.set(scope_key(namespace), scope, pxat=int(expires * 1000))
        await pipe.execute()

    async def _drop(self, namespace: str) -> None:
        """Deletes a namespace's entries, atomically against concurrent puts: the ids set
        is renamed away in one step, so an entry put after it lands in a new set and
        survives, and one put before it is in the renamed set and is deleted."""
        assert self._client is not None
        await self._delete_snapshot(namespace)
        await self._client.delete(scope_key(namespace))
        dropped = dropped_ids_key(namespace)
        try:
            await self._client.rename(ids_key(namespace), dropped)
        except ResponseError as e:
            if "no such key" in str(e).lower():
                return  # nothing stored
            raise
        await self._client.expire(dropped, DROPPED_IDS_SECONDS)
        members = await self._client.smembers(dropped)
        await self._delete([entry_key(namespace, _text(i)) for i in members])
        await self._client.delete(dropped)

    async def _delete(self, keys: list[str]) -> None:
        """Deletes `keys`, `_LOAD_CHUNK` to a command (none blocks Redis for long)."""
        assert self._client is not None
        for start in range(0, len(keys), _LOAD_CHUNK):
            await self._client.delete(*keys[start : start + _LOAD_CHUNK])

    async def _flush_backlog(self) -> None:
        while self._backlog:
            batch = [self._backlog[i] for i in range(min(500, len(self._backlog)))]
            await self._apply(batch)
            for _ in batch:
                self._backlog.popleft()
            metrics.REDIS_BACKLOG.set(len(self._backlog))

    async def _flush_forever(self) -> None:
        # Woken by writes that could not go through, not by a timer (so not a Periodic);
        # like a Periodic, it outlives any failure of a step.
        assert self._client is not None
        while True:
            await self._wake.wait()
            try:
                with redisclient.closed_connections():
                    await self._client.ping()
                    await self._flush_backlog()
                    self._set_state("up")
                    self._wake.clear()
            except _FAILURES as e:
                metrics.REDIS_ERRORS.inc()
                self._set_state("down", e)
                await asyncio.sleep(self.retry_interval)
            except Exception as e:  # a bug, not an outage: said as loudly as one
                log.exception("redis backlog flush failed")
                self._set_state("down", e)
                await asyncio.sleep(self.retry_interval)

    # -- graph snapshots -----------------------------------------------------------------

    async def save_snapshot(
        self, namespace: str, model: str, graph: Path, membership: Membership
    ) -> bool:
        """Uploads a saved graph as the namespace's snapshot (replacing the last one);
        False when Redis is away or failed meanwhile (a snapshot only saves work)."""
        if self.state != "up" or self._client is None:
            return False
        version = uuid.uuid4().hex[:16]
        tail = membership.encode()
        graph_bytes = (await asyncio.to_thread(graph.stat)).st_size
        chunks = 0
        try:
            with redisclient.closed_connections():
                with graph.open("rb") as file:
                    while True:
                        data = await asyncio.to_thread(file.read, SNAPSHOT_CHUNK_BYTES)
                        if not data:
                            break
                        await self._put_chunk(namespace, version, chunks, data)
                        chunks += 1
                for start in range(0, len(tail), SNAPSHOT_CHUNK_BYTES):
                    await self._put_chunk(
                        namespace, version, chunks, tail[start : start + SNAPSHOT_CHUNK_BYTES]
                    )
                    chunks += 1
                manifest = {
                    "version": version,
                    "model": model,
                    "chunks": chunks,
                    "graph_bytes": graph_bytes,
                    "entries": len(membership.ids),
                }
                fields = [str(x) for pair in manifest.items() for x in pair]
                old = await self._client.eval(
                    _SWITCH_SNAPSHOT, 1, graph_key(namespace), SNAPSHOT_SECONDS, *fields
                )
        except _FAILURES as e:
            log.warning(
                "graph snapshot not saved", extra={"namespace": namespace, "error": repr(e)}
            )
            with contextlib.suppress(*_FAILURES), redisclient.closed_connections():
                await self._delete_chunks(namespace, version, chunks + 1)
            return False
        if old and old[0] is not None:
            with contextlib.suppress(*_FAILURES), redisclient.closed_connections():
                await self._delete_chunks(namespace, _text(old[0]), int(old[1] or 0))
        return True

    async def _put_chunk(self, namespace: str, version: str, chunk: int, data: bytes) -> None:
        assert self._client is not None
        key = graph_chunk_key(namespace, version, chunk)
        async with asyncio.timeout(self.write_timeout * 10):
            await self._client.set(key, data, ex=SNAPSHOT_SECONDS)

    async def _delete_chunks(self, namespace: str, version: str, chunks: int) -> None:
        await self._delete([graph_chunk_key(namespace, version, i) for i in range(chunks)])

    async def _delete_snapshot(self, namespace: str) -> None:
        assert self._client is not None
        old = await self._client.hmget(graph_key(namespace), ["version", "chunks"])
        await self._client.delete(graph_key(namespace))
        if old[0] is not None:
            await self._delete_chunks(namespace, _text(old[0]), int(old[1] or 0))

    async def snapshot_manifest(self, namespace: str) -> GraphManifest | None:
        """The namespace's snapshot, if it has one. Raises StoreUnavailableError."""
        if self.state == "disabled":
            return None
        assert self._client is not None
        try:
            with redisclient.closed_connections():
                fields = await self._client.hgetall(graph_key(namespace))
        except _FAILURES as e:
            self._set_state("down", e)
            raise StoreUnavailableError(str(e)) from e
        if not fields:
            return None
        text = {_text(k): _text(v) for k, v in fields.items()}
        return GraphManifest(
            version=text["version"],
            model=text["model"],
            chunks=int(text["chunks"]),
            graph_bytes=int(text["graph_bytes"]),
            entries=int(text["entries"]),
        )

    async def load_snapshot(
        self, namespace: str, manifest: GraphManifest, graph: Path
    ) -> Membership | None:
        """Downloads the snapshot: its graph into the file `graph`, and its membership;
        None when it is gone meanwhile (replaced, expired) or damaged, or Redis failed."""
        assert self._client is not None
        tail = bytearray()
        written = 0
        try:
            with redisclient.closed_connections():
                with graph.open("wb") as file:
                    for i in range(manifest.chunks):
                        key = graph_chunk_key(namespace, manifest.version, i)
                        data = await self._client.get(key)
                        if data is None:
                            return None
                        assert isinstance(data, bytes)
                        cut = max(0, min(len(data), manifest.graph_bytes - written))
                        await asyncio.to_thread(file.write, data[:cut])
                        written += cut
                        tail += data[cut:]
                return Membership.decode(bytes(tail), manifest.entries)
        except _FAILURES as e:
            log.warning(
                "graph snapshot not loaded", extra={"namespace": namespace, "error": repr(e)}
            )
            return None
        except ValueError as e:
            log.warning("graph snapshot damaged", extra={"namespace": namespace, "error": repr(e)})
            return None

    # -- reads --------------------------------------------------------------------------

    async def load_namespace(self, namespace: str, now: float) -> list[Entry]:
        """The namespace's live entries. Raises StoreUnavailableError."""
        if self.state == "disabled":
            return []
        assert self._client is not None
        try:
            with redisclient.closed_connections():
                entries, stale = [], []
                with _cyclic_gc_paused():
                    async for entry_id, entry in self._stored(namespace):
                        if entry is None:
                            stale.append(entry_id)
                        elif not entry.expired(now):
                            entries.append(entry)
                if stale:
                    await self._client.srem(ids_key(namespace), *stale)
                return entries
        except _FAILURES as e:
            metrics.REDIS_ERRORS.inc()
            self._set_state("down", e)
            raise StoreUnavailableError(str(e)) from e

    async def entries_of(self, namespace: str, now: float) -> AsyncIterator[list[Entry]]:
        """The namespace's live entries, `_LOAD_CHUNK` at a time (an export: the whole
        namespace is never in memory at once). Raises StoreUnavailableError."""
        try:
            with redisclient.closed_connections():
                batch: list[Entry] = []
                async for _, entry in self._stored(namespace):
                    if entry is not None and not entry.expired(now):
                        batch.append(entry)
                    if len(batch) == _LOAD_CHUNK:
                        yield batch
                        batch = []
                if batch:
                    yield batch
        except _FAILURES as e:
            metrics.REDIS_ERRORS.inc()
            self._set_state("down", e)
            raise StoreUnavailableError(str(e)) from e

    async def _stored(self, namespace: str) -> AsyncIterator[tuple[str, Entry | None]]:
        """Each id of the namespace's set with its entry; None where only the id is left
        (the entry expired, or only a hit counter remains)."""
        assert self._client is not None
        ids = sorted(_text(i) for i in await self._client.smembers(ids_key(namespace)))
        async for entry_id, fields in self._hashes(namespace, ids):
            yield entry_id, Entry.from_redis(namespace, fields) if b"id" in fields else None

    async def scope_of(self, namespace: str) -> bytes | None:
        """The namespace's saved scope; None when none was saved. Raises
        StoreUnavailableError."""
        assert self._client is not None
        try:
            with redisclient.closed_connections():
                scope = await self._client.get(scope_key(namespace))
                return scope.encode() if isinstance(scope, str) else scope
        except _FAILURES as e:
            self._set_state("down", e)
            raise StoreUnavailableError(str(e)) from e

    async def tenants(self) -> list[str]:
        """Every tenant with a namespace set in Redis (a scan: every node of a cluster).
        Raises StoreUnavailableError."""
        assert self._client is not None
        try:
            with redisclient.closed_connections():
                return sorted(
                    {
                        _text(key).removeprefix(_TENANT_PREFIX)
                        async for key in self._client.scan_iter(
                            match=f"{_TENANT_PREFIX}*", count=1000
                        )
                    }
                )
        except _FAILURES as e:
            self._set_state("down", e)
            raise StoreUnavailableError(str(e)) from e

    async def _hashes(
        self, namespace: str, ids: list[str]
    ) -> AsyncIterator[tuple[str, dict[bytes, bytes]]]:
        """Each entry's hash, `_LOAD_CHUNK` to a command: Redis reads the next chunk while
        the caller decodes this one (on the other core)."""
        chunks = [ids[start : start + _LOAD_CHUNK] for start in range(0, len(ids), _LOAD_CHUNK)]
        fetching: asyncio.Future[list[list[bytes]]] | None = None
        try:
            for i, chunk in enumerate(chunks):
                replies = await (fetching or self._hgetall_many(namespace, chunk))
                fetching = None
                if i + 1 < len(chunks):
                    fetching = asyncio.ensure_future(self._hgetall_many(namespace, chunks[i + 1]))
                    await asyncio.sleep(0)  # lets it send the command before we decode
                for entry_id, flat in zip(chunk, replies, strict=True):
                    yield entry_id, dict(zip(flat[::2], flat[1::2], strict=True))
        finally:
            if fetching is not None:
                fetching.cancel()

    async def _hgetall_many(self, namespace: str, ids: list[str]) -> list[list[bytes]]:
        assert self._client is not None
        keys = [entry_key(namespace, entry_id) for entry_id in ids]
        replies: list[list[bytes]] = await self._client.eval(_HGETALL_MANY, len(keys), *keys)
        return replies

    async def namespaces_of_tenant(self, tenant: str) -> list[str]:
        """The tenant's namespaces that hold entries in Redis. Those that hold none any more
        (dropped, or every entry gone) leave the tenant's set here. Raises
        StoreUnavailableError."""
        if self.state == "disabled":
            return []
        assert self._client is not None
        try:
            with redisclient.closed_connections():
                listed = sorted(_text(n) for n in await self._client.smembers(tenant_key(tenant)))
                held = await self._holding(listed)
                if empty := [n for n in listed if n not in held]:
                    await self._client.srem(tenant_key(tenant), *empty)
                    # A first put may have landed between the check and the removal (its id
                    # is sent before its tenant; on a cluster the two travel to their nodes
                    # side by side): such a namespace goes back in.
                    if back := await self._holding(empty):
                        await self._client.sadd(tenant_key(tenant), *back)
                        held |= back
                return [n for n in listed if n in held]
        except _FAILURES as e:
            self._set_state("down", e)
            raise StoreUnavailableError(str(e)) from e

    async def _holding(self, namespaces: list[str]) -> set[str]:
        """Those of `namespaces` whose ids set exists (one round trip per node)."""
        assert self._client is not None
        pipe = self._client.pipeline(transaction=False)
        for namespace in namespaces:
            pipe.exists(ids_key(namespace))
        found = await pipe.execute() if namespaces else []
        return {n for n, exists in zip(namespaces, found, strict=True) if exists}
