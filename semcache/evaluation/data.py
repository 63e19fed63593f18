"""The evaluation's data: labelled pairs from JSONL files or the project's groups, their
splits, and the vectors of their texts (`Vectors`; `embeddings.TextVectors` is one). The only
I/O of the evaluation besides embedding: `load_pairs` reading a file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from semcache.quality import dataset

#: What `select` accepts: everything, or the held-out test split only.
SPLITS = ("all", "test")
TEST_FRACTION = 0.2
#: Changing it moves pairs between fit and test: a calibrated policy's test numbers would
#: then include pairs it was fitted on.
SPLIT_SEED = "semcache-split-v1"


class PairsError(ValueError):
    """A pairs file that cannot be used; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class Pair:
    """Two texts and whether they mean the same (label 1) or not (0)."""

    a: str
    b: str
    label: int
    #: What the pair tests (hand-written sets: paraphrase, negation, number, ...), or "".
    kind: str = ""
    #: The hit-policy category to decide with, or "" (the policy's default or detection).
    category: str = ""
    #: The project's groups carry their split (train, dev, test); "" for pairs files.
    split: str = ""


class Vectors(Protocol):
    """Unit vectors by text (`semcache.evaluation.embeddings.TextVectors` is one)."""

    @property
    def model(self) -> str: ...

    def of(self, texts: Sequence[str]) -> np.ndarray: ...


def _text(record: dict[str, Any], key: str, where: str, *, required: bool) -> str:
    value = record.get(key, None if required else "")
    if not isinstance(value, str) or (required and not value.strip()):
        want = "a non-empty string" if required else "a string when given"
        raise PairsError(f"{where}: {key!r} must be {want}, got {value!r}")
    return value


def _parse(line: str, where: str) -> Pair:
    record = dataset.json_object(line, where, PairsError)
    a = _text(record, "a", where, required=True)
    b = _text(record, "b", where, required=True)
    label = record.get("label")
    if not isinstance(label, int) or label not in (0, 1):
        raise PairsError(f"{where}: 'label' must be 0 or 1, got {label!r}")
    return Pair(
        a=a,
        b=b,
        label=int(label),
        kind=_text(record, "kind", where, required=False),
        category=_text(record, "category", where, required=False),
    )


def load_pairs(path: Path | str, limit: int | None = None) -> list[Pair]:
    """The pairs of a JSONL file (`a`, `b`, `label`, optional `kind`, `category`), the first
    `limit` only when given. Blank lines are skipped; anything else wrong is a PairsError
    naming `file:line`. A directory is read as the project's groups (`dataset.py`): every
    group's pairs, with their kinds and splits."""
    path = Path(path)
    if path.is_dir():
        return _group_pairs(path, limit)
    pairs: list[Pair] = []
    try:
        with path.open(encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if limit is not None and len(pairs) >= limit:
                    break
                if line.strip():
                    pairs.append(_parse(line, f"{path}:{number}"))
    except OSError as e:
        raise PairsError(f"{path}: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise PairsError(f"{path}:{len(pairs) + 1}?: not UTF-8 text ({e.reason})") from e
    if not pairs:
        raise PairsError(f"{path}: no pairs")
    return pairs


def _group_pairs(path: Path, limit: int | None) -> list[Pair]:
    try:
        groups = dataset.load_groups([path])
    except (dataset.DatasetError, OSError) as e:
        raise PairsError(str(e)) from e
    pairs = [
        Pair(str(p["a"]), str(p["b"]), int(str(p["label"])), kind=str(p["kind"]), split=g.split)
        for g in groups
        for p in dataset.pairs_of(g)
    ]
    if not pairs:
        raise PairsError(f"{path}: no groups")
    return pairs[:limit]


def is_test(text: str, test_fraction: float = TEST_FRACTION, seed: str = SPLIT_SEED) -> bool:
    """Whether pairs whose `a` is `text` are held out: a keyed blake2b of the text, so the
    answer never changes between runs, machines or Python versions."""
    h = hashlib.blake2b(text.encode("utf-8"), digest_size=8, key=seed.encode("utf-8")[:64])
    return int.from_bytes(h.digest(), "big") < test_fraction * 2**64


def split(
    pairs: Sequence[Pair], test_fraction: float = TEST_FRACTION, seed: str = SPLIT_SEED
) -> tuple[list[Pair], list[Pair]]:
    """(fit, test): about `test_fraction` of the pairs held out, grouped by `a`, so pairs that
    share an `a` are all on one side (what a calibrator fits never leaks into its test)."""
    fit: list[Pair] = []
    test: list[Pair] = []
    for pair in pairs:
        (test if is_test(pair.a, test_fraction, seed) else fit).append(pair)
    return fit, test


def select(pairs: Sequence[Pair], which: str) -> list[Pair]:
    """`all` the pairs, or only the held-out `test` split (or the `fit` side). Pairs that
    carry their split (the project's groups) also have `train` (= `fit`) and `dev`."""
    if which == "all":
        return list(pairs)
    if pairs and pairs[0].split:
        wanted = {"fit": "train"}.get(which, which)
        if wanted not in dataset.SPLITS:
            raise ValueError(f"split must be one of all, train, dev, test; got {which!r}")
        return [p for p in pairs if p.split == wanted]
    fit, test = split(pairs)
    if which == "test":
        return test
    if which == "fit":
        return fit
    raise ValueError(f"split must be one of all, test, fit; got {which!r}")


def texts_of(pairs: Sequence[Pair]) -> list[str]:
    """The distinct texts of `pairs`, in first-seen order: what to embed."""
    return list(dict.fromkeys(t for p in pairs for t in (p.a, p.b)))
