"""A namespace's saved graph: what `NamespaceIndex.save` wrote, which entry each of its
labels is, and the model of its vectors.

A shard that takes a big namespace over loads the snapshot instead of building the graph
(37 minutes for 1M entries on two cores, searching exactly meanwhile) and reconciles it
with the entries Redis holds now: labels of entries gone since are deleted, entries added
since are added. So a snapshot never has to be exact, only recent enough to save work.

The blob is the hnswlib file followed by a tail: the labels (int64, little-endian) and the
entry ids (newline-separated), so one chunked stream carries both (`cache_svc.store`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class GraphManifest:
    """What Redis says of the current snapshot of a namespace."""

    version: str
    model: str
    chunks: int
    graph_bytes: int
    entries: int


@dataclass(frozen=True, slots=True)
class Membership:
    """Which entry each label of a saved graph is."""

    labels: np.ndarray  # int64
    ids: list[str]

    def encode(self) -> bytes:
        return self.labels.astype("<i8").tobytes() + "\n".join(self.ids).encode()

    @classmethod
    def decode(cls, data: bytes, count: int) -> Membership:
        """Raises ValueError when `data` is not `count` labels and ids."""
        cut = 8 * count
        labels = np.frombuffer(data[:cut], dtype="<i8").astype(np.int64)
        ids = data[cut:].decode().split("\n") if count else []
        if len(labels) != count or len(ids) != count:
            raise ValueError(f"a snapshot of {count} entries holds {len(labels)}/{len(ids)}")
        return cls(labels, ids)
