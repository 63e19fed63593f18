"""What a shard sends of an export: the selected namespaces' live entries, in batches.

Redis is the source of truth and every shard reads all of it, so the router splits an
export among the shards by namespace (`part` of `parts`) and each entry is sent once, by
one shard, whoever holds it in memory. A shard without Redis can only send what it holds
(a namespace lives on one shard). A Redis that is down fails the export: it would
otherwise end cut short, looking whole.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

from cache_svc.entry import Entry
from cache_svc.namespace import Namespace
from cache_svc.store import StoreUnavailableError, WriteThroughStore


@dataclass(frozen=True, slots=True)
class Selection:
    """Which entries an export sends."""

    tenant: str | None  # None: every tenant's
    namespace: str = ""  # "": every namespace of the tenant(s)
    part: int = 0
    parts: int = 1

    def names(self, namespace: str) -> bool:
        """Whether the selection covers the namespace (any part)."""
        return not self.namespace or namespace == self.namespace

    def takes(self, namespace: str) -> bool:
        """Whether the namespace is this selection's and this part's."""
        return self.names(namespace) and (
            self.parts <= 1 or int(namespace, 16) % self.parts == self.part
        )

    def admits(self, entry: Entry) -> bool:
        return self.tenant is None or entry.tenant == self.tenant


@dataclass(frozen=True, slots=True)
class Batch:
    """Live entries of one namespace, with the scope they were stored in (None: unknown)."""

    scope: bytes | None
    entries: list[Entry]


async def batches(
    store: WriteThroughStore, held: Mapping[str, Namespace], selection: Selection
) -> AsyncIterator[Batch]:
    """The selected entries. Raises StoreUnavailableError while Redis is down."""
    if store.state == "disabled":
        async for batch in _held(held, selection):
            yield batch
        return
    if store.state != "up":
        raise StoreUnavailableError("redis is down: an export reads Redis")
    for namespace in await _namespaces(store, selection):
        scope = held[namespace].scope if namespace in held else None
        scope = scope or await store.scope_of(namespace)
        async for entries in store.entries_of(namespace, time.time()):
            if admitted := [e for e in entries if selection.admits(e)]:
                yield Batch(scope, admitted)


async def _namespaces(store: WriteThroughStore, selection: Selection) -> list[str]:
    if selection.namespace:
        candidates = [selection.namespace]
    elif selection.tenant is not None:
        candidates = await store.namespaces_of_tenant(selection.tenant)
    else:
        candidates = [n for t in await store.tenants() for n in await store.namespaces_of_tenant(t)]
    return sorted({n for n in candidates if selection.takes(n)})


async def _held(held: Mapping[str, Namespace], selection: Selection) -> AsyncIterator[Batch]:
    now = time.time()
    for namespace in sorted(filter(selection.names, held)):
        ns = held[namespace]
        if entries := [e for e in ns if selection.admits(e) and not e.expired(now)]:
            yield Batch(ns.scope, entries)
