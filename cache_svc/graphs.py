"""Graph snapshots of big namespaces: saved to Redis by the shard that builds or changes a
graph, loaded by the next shard that hydrates the namespace.

Only namespaces of `min_entries` or more are saved (smaller graphs rebuild in seconds, and
a snapshot costs Redis about the vectors' size again). A graph is saved when a bulk load
has built it (free: nothing else sees it yet) and, by `save_changed`, once its changes since
the last save reach a tenth of its size (the index is locked while it is written to a
local file: about a second per GB). The upload and download run on the event loop in
chunks; file writes and hnswlib's work run on worker threads.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from cache_svc.entry import Entry
from cache_svc.index import IndexParams, NamespaceIndex
from cache_svc.namespace import Namespace
from cache_svc.snapshot import GraphManifest
from cache_svc.store import WriteThroughStore

log = logging.getLogger(__name__)

#: Changes (adds and removals) that make a saved graph worth saving again: this share of
#: its size, and at least `MIN_CHANGES`.
CHANGED_SHARE = 0.1
MIN_CHANGES = 1000


class GraphSnapshots:
    def __init__(self, store: WriteThroughStore, params: IndexParams, min_entries: int) -> None:
        self.store = store
        self.params = params
        #: 0: snapshots off.
        self.min_entries = min_entries
        self.saved = 0
        self.restored = 0

    @property
    def enabled(self) -> bool:
        return self.min_entries > 0 and self.store.state != "disabled"

    async def manifest(self, key: str) -> GraphManifest | None:
        """The namespace's snapshot, if snapshots are on and it has one. Raises
        StoreUnavailableError."""
        return await self.store.snapshot_manifest(key) if self.enabled else None

    async def restore(self, ns: Namespace, entries: list[Entry], manifest: GraphManifest) -> bool:
        """Loads the empty `ns` (its model: the snapshot's) with `entries` and the
        snapshot's graph. False when the snapshot could not be used: the caller loads the
        namespace as without one."""
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="semcache-graph-") as tmp:
            path = Path(tmp) / "graph.hnsw"
            membership = await self.store.load_snapshot(ns.key, manifest, path)
            if membership is None:
                return False
            try:
                index = await asyncio.to_thread(
                    NamespaceIndex.restore, path, membership.labels, self.params
                )
            except RuntimeError as e:
                log.warning(
                    "graph snapshot unreadable", extra={"namespace": ns.key, "error": str(e)}
                )
                return False
        ns.load_restored(entries, index, membership)
        self.restored += 1
        log.info(
            "graph restored from its snapshot",
            extra={
                "namespace": ns.key,
                "entries": len(ns),
                "in_snapshot": manifest.entries,
                "changes_since": ns.changes,
                "seconds": round(time.perf_counter() - started, 2),
            },
        )
        return True

    async def build(self, ns: Namespace) -> None:
        """Builds the graph of a bulk load (worker thread) and saves it if it is big."""
        if not (self.enabled and len(ns.index) >= self.min_entries):
            await asyncio.to_thread(ns.index.build)
            return
        with tempfile.TemporaryDirectory(prefix="semcache-graph-") as tmp:
            path = Path(tmp) / "graph.hnsw"
            labels = await asyncio.to_thread(ns.index.build, path)
            if labels is not None:
                ns.changes = 0
                await self._upload(ns, path, labels)

    async def save_changed(self, namespaces: list[Namespace]) -> int:
        """Saves the graphs of big namespaces changed enough since their last save; returns
        how many it saved."""
        saved = 0
        for ns in namespaces:
            size = len(ns.index)
            enough = max(MIN_CHANGES, int(CHANGED_SHARE * size))
            if not self.enabled or size < self.min_entries or ns.changes < enough:
                continue
            with tempfile.TemporaryDirectory(prefix="semcache-graph-") as tmp:
                path = Path(tmp) / "graph.hnsw"
                changes = ns.changes
                labels = await asyncio.to_thread(ns.index.save, path)
                if labels is None:
                    continue  # a bulk load is building: it saves when done
                ns.changes -= changes
                saved += await self._upload(ns, path, labels)
        return saved

    async def _upload(self, ns: Namespace, path: Path, labels: np.ndarray) -> bool:
        started = time.perf_counter()
        membership = ns.membership(labels)
        if not await self.store.save_snapshot(ns.key, ns.model, path, membership):
            return False
        self.saved += 1
        log.info(
            "graph snapshot saved",
            extra={
                "namespace": ns.key,
                "entries": len(membership.ids),
                "seconds": round(time.perf_counter() - started, 2),
            },
        )
        return True
