"""One namespace in memory: its entries, the exact-match map and the vector index."""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from cache_svc.entry import Entry
from cache_svc.index import IndexParams, NamespaceIndex
from cache_svc.snapshot import Membership


@dataclass(frozen=True, slots=True)
class Candidate:
    entry: Entry
    similarity: float


class Namespace:
    """Pure in-memory state; no I/O. Expired entries are never returned.

    The index holds vectors of one model (`model`): an entry whose vector is of another is
    matched exactly only, until it is re-embedded (`revector`) or the index moves to its
    model (`switch_model`). Vectors of two models are never compared.
    """

    def __init__(self, key: str, params: IndexParams | None = None, model: str = "") -> None:
        self.key = key
        self.model = model
        self.index = NamespaceIndex(params)
        #: When the shard put it in memory (`time.monotonic()`), hydrated or new.
        self.loaded_at = time.monotonic()
        self._entries: dict[str, Entry] = {}
        self._by_prompt: dict[str, str] = {}  # prompt key -> entry id
        self._label_of: dict[str, int] = {}
        self._entry_of: dict[int, str] = {}
        self._labels = itertools.count()
        #: model id -> entries with a vector of it ("": without one): what a model change or
        #: an embedder outage leaves to re-embed, known without a walk over the entries (the
        #: shard asks twice a second).
        self._vectors_of: Counter[str] = Counter()
        #: Adds to and removals from the index since its graph was last saved.
        self.changes = 0
        #: The scope (serialised) this process last saved for it in Redis; None: none yet.
        self.scope: bytes | None = None

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Entry]:
        return iter(list(self._entries.values()))

    def get(self, entry_id: str) -> Entry | None:
        return self._entries.get(entry_id)

    def exact(self, prompt_key: str, now: float) -> Entry | None:
        entry_id = self._by_prompt.get(prompt_key)
        entry = self._entries.get(entry_id) if entry_id else None
        return entry if entry is not None and not entry.expired(now) else None

    def nearest(self, vector: np.ndarray, model: str, now: float, k: int = 4) -> list[Candidate]:
        """Live entries nearest to `vector` (made by `model`), most similar first; none when
        the index is of another model."""
        if model != self.model:
            return []
        found = []
        for label, similarity in self.index.search(vector, k):
            entry = self._entries.get(self._entry_of.get(label, ""))
            if entry is not None and not entry.expired(now):
                found.append(Candidate(entry, similarity))
        return found

    def add(self, entry: Entry) -> Entry | None:
        """Adds `entry`; returns the entry it replaced (same normalised prompt), if any."""
        replaced_id = self._by_prompt.get(entry.prompt_key)
        replaced = self.remove(replaced_id) if replaced_id else None
        if (labelled := self._track(entry)) is not None:
            self.index.add(*labelled)
            self.changes += 1
        return replaced

    def _track(self, entry: Entry) -> tuple[int, np.ndarray] | None:
        """Records the entry in the maps; returns its index label and vector when it has a
        vector of the index's model."""
        self._record(entry)
        return self._label(entry)

    def _record(self, entry: Entry) -> None:
        self._entries[entry.id] = entry
        self._by_prompt[entry.prompt_key] = entry.id
        self._vectors_of[self._model_of(entry)] += 1

    @staticmethod
    def _model_of(entry: Entry) -> str:
        """The model of the entry's vector; "" when it has none (stored while the embedder
        was unavailable: re-embedded like an entry of an old model)."""
        return entry.model if entry.vector is not None else ""

    def _label(self, entry: Entry) -> tuple[int, np.ndarray] | None:
        if entry.vector is None or entry.model != self.model:
            return None
        label = next(self._labels)
        self._label_of[entry.id] = label
        self._entry_of[label] = entry.id
        return label, entry.vector

    def load(self, entries: list[Entry]) -> None:
        """Bulk-adds hydrated entries to an empty namespace: searchable at once, exactly;
        the caller then runs `self.index.build()` on a worker thread."""
        labelled: list[tuple[int, np.ndarray]] = []
        for entry in entries:
            if entry.prompt_key in self._by_prompt:
                continue  # a duplicate prompt left behind by a crash between two writes
            if (item := self._track(entry)) is not None:
                labelled.append(item)
        self._bulk_load(labelled)

    def load_restored(
        self, entries: list[Entry], index: NamespaceIndex, membership: Membership
    ) -> None:
        """Adds hydrated entries to an empty namespace whose index comes from a snapshot
        of its graph (of `self.model`): the snapshot's labels keep their entries, those of
        entries gone since are deleted, entries not in it are added."""
        self.index = index
        label_of = dict(zip(membership.ids, membership.labels.tolist(), strict=True))
        self._labels = itertools.count(int(membership.labels.max(initial=-1)) + 1)
        added = 0
        for entry in entries:
            if entry.prompt_key in self._by_prompt:
                continue  # a duplicate prompt left behind by a crash between two writes
            self._record(entry)
            label = label_of.pop(entry.id, None) if self._model_of(entry) == self.model else None
            if label is not None:
                self._label_of[entry.id] = label
                self._entry_of[label] = entry.id
            elif (item := self._label(entry)) is not None:
                self.index.add(*item)
                added += 1
        for label in label_of.values():  # entries gone since the snapshot
            self.index.remove(label)
        self.changes = added + len(label_of)

    def membership(self, labels: np.ndarray) -> Membership:
        """Which entry each of `labels` is, leaving out those whose entry is gone."""
        kept = [
            (label, self._entry_of[label]) for label in labels.tolist() if label in self._entry_of
        ]
        return Membership(
            np.asarray([label for label, _ in kept], dtype=np.int64), [i for _, i in kept]
        )

    def switch_model(self, model: str) -> None:
        """Moves the index to `model`: rebuilt from the entries whose vectors are of it,
        searchable at once (exactly); the caller then runs `self.index.build()` on a worker
        thread. The others stay exact-match only until re-embedded."""
        self.model = model
        self.index = NamespaceIndex(self.index.params)
        self._label_of.clear()
        self._entry_of.clear()
        labelled: list[tuple[int, np.ndarray]] = []
        for entry in self._entries.values():
            if (item := self._label(entry)) is not None:
                labelled.append(item)
        self._bulk_load(labelled)

    def _bulk_load(self, labelled: list[tuple[int, np.ndarray]]) -> None:
        if labelled:
            labels = np.asarray([label for label, _ in labelled])
            self.index.start_bulk_load(labels, np.stack([v for _, v in labelled]))

    def revector(self, entry: Entry, vector: np.ndarray, model: str) -> None:
        """Gives the entry a vector of `model` (re-embedded). An index of another model
        keeps the entry's old vector until it switches; one of `model` takes the new one."""
        if self._entries.get(entry.id) is not entry:
            return  # removed or replaced meanwhile
        self._vectors_of[self._model_of(entry)] -= 1
        self._vectors_of[model] += 1
        entry.vector, entry.model = vector, model
        labelled = self._label(entry) if entry.id not in self._label_of else None
        if labelled is not None:
            self.index.add(*labelled)

    def not_of(self, model: str) -> list[Entry]:
        """Entries without a vector of `model` (of another model, or none), oldest first."""
        if not self.count_not_of(model):
            return []
        return [e for e in self._entries.values() if self._model_of(e) != model]

    def count_not_of(self, model: str) -> int:
        """How many entries have no vector of `model` (no walk)."""
        return self._vectors_of.total() - self._vectors_of[model]

    def remove(self, entry_id: str) -> Entry | None:
        entry = self._entries.pop(entry_id, None)
        if entry is None:
            return None
        if self._by_prompt.get(entry.prompt_key) == entry_id:
            del self._by_prompt[entry.prompt_key]
        self._vectors_of[self._model_of(entry)] -= 1
        label = self._label_of.pop(entry_id, None)
        if label is not None:
            del self._entry_of[label]
            self.index.remove(label)
            self.changes += 1
        return entry

    def expired(self, now: float) -> list[str]:
        return [e.id for e in self._entries.values() if e.expired(now)]
