"""The project's own labelled data: groups of prompts written for training and testing.

A *group* is one base prompt, the way a user of an LLM app would send it, with its
paraphrases by kind (label 1: one and the same answer is fully right for both) and its
near-miss traps by kind (label 0: a question that looks close but needs another answer).
One JSON object a line in `data/pairs/groups/*.jsonl`:

    {"domain": "python", "prompt": "How do I reverse a list in Python?",
     "close": ["...", "..."], "loose": ["...", "..."], "typo": ["..."], "filler": ["..."],
     "terse": ["..."],
     "negation": "...", "antonym": "...", "number": "...", "unit": null, "entity": "...",
     "direction": null, "scope": "...", "unrelated": "..."}

Paraphrases are lists; a trap is one text, or null where no natural trap of that kind
exists (only the kinds in OPTIONAL_TRAPS may be null). Groups are split train / dev / test
by a keyed hash of the base prompt, so no base prompt (and none of its variants) is in two
splits. Standard library only: the model build reads it too.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Paraphrase kinds (label 1) and how many of each a group holds.
PARAPHRASES = {"close": 2, "loose": 2, "typo": 1, "filler": 1, "terse": 1}
#: Trap kinds (label 0).
TRAPS = ("negation", "antonym", "number", "unit", "entity", "direction", "scope", "unrelated")
#: Trap kinds that a prompt may not admit naturally (null in the group).
OPTIONAL_TRAPS = frozenset({"negation", "antonym", "number", "unit", "direction"})
KINDS = (*PARAPHRASES, *TRAPS)
MAX_CHARS = 1000

SPLITS = ("train", "dev", "test")
#: Shares of dev and test; the rest is train. Changing them, or the seed, moves groups
#: between splits: every model and policy fitted on the old train split would then be
#: judged on some of its own training data.
DEV_FRACTION = 0.15
TEST_FRACTION = 0.15
SPLIT_SEED = "semcache-groups-v1"


class DatasetError(ValueError):
    """A group file that cannot be used; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class Group:
    domain: str
    prompt: str
    paraphrases: dict[str, tuple[str, ...]]
    traps: dict[str, str]  # kind -> text; kinds without a trap are absent
    where: str  # file:line

    @property
    def split(self) -> str:
        return split_of(self.prompt)

    def texts(self) -> Iterator[str]:
        yield self.prompt
        for variants in self.paraphrases.values():
            yield from variants
        yield from self.traps.values()


def _normal(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


def split_of(prompt: str) -> str:
    """ "train", "dev" or "test", fixed by a keyed hash of the normalised base prompt."""
    digest = hashlib.blake2b(_normal(prompt).encode(), key=SPLIT_SEED.encode(), digest_size=8)
    u = int.from_bytes(digest.digest(), "big") / 2**64
    if u < TEST_FRACTION:
        return "test"
    return "dev" if u < TEST_FRACTION + DEV_FRACTION else "train"


def _text(value: object, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DatasetError(f"{where}: must be a non-empty string, got {value!r}")
    if len(value) > MAX_CHARS:
        raise DatasetError(f"{where}: longer than {MAX_CHARS} characters")
    if value != value.strip():
        raise DatasetError(f"{where}: leading or trailing whitespace")
    return value


def json_object(line: str, where: str, error: type[ValueError]) -> dict[str, Any]:
    """One line of a JSONL file as an object, else `error` naming `where` (`file:line`)."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise error(f"{where}: not JSON: {e.msg} (column {e.colno})") from e
    if not isinstance(record, dict):
        raise error(f"{where}: expected a JSON object, got {type(record).__name__}")
    return record


def parse_group(line: str, where: str) -> Group:
    record = json_object(line, where, DatasetError)
    expected = {"domain", "prompt", *KINDS}
    if missing := expected - set(record):
        raise DatasetError(f"{where}: missing {', '.join(sorted(missing))}")
    if unknown := set(record) - expected - {"note"}:
        raise DatasetError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    domain = _text(record["domain"], f"{where}: domain")
    prompt = _text(record["prompt"], f"{where}: prompt")
    paraphrases: dict[str, tuple[str, ...]] = {}
    for kind, count in PARAPHRASES.items():
        values = record[kind]
        if not isinstance(values, list) or len(values) != count:
            raise DatasetError(f"{where}: {kind} must be a list of {count} text(s)")
        paraphrases[kind] = tuple(_text(v, f"{where}: {kind}") for v in values)
    traps: dict[str, str] = {}
    for kind in TRAPS:
        value = record[kind]
        if value is None and kind in OPTIONAL_TRAPS:
            continue
        traps[kind] = _text(value, f"{where}: {kind}")
    group = Group(domain, prompt, paraphrases, traps, where)
    seen: dict[str, str] = {}
    for kind, text in [("prompt", prompt), *_labelled(paraphrases, traps)]:
        key = _normal(text)
        if key in seen:
            raise DatasetError(f"{where}: {kind} repeats the {seen[key]}: {text!r}")
        seen[key] = kind
    return group


def _labelled(
    paraphrases: dict[str, tuple[str, ...]], traps: dict[str, str]
) -> Iterator[tuple[str, str]]:
    for kind, variants in paraphrases.items():
        for text in variants:
            yield kind, text
    yield from traps.items()


def load_groups(paths: Iterable[Path]) -> list[Group]:
    """Every group of the given files (or of the `*.jsonl` files of given directories).
    A text that appears in two groups is an error: it would tie their splits together."""
    groups: list[Group] = []
    for path in _files(paths):
        with path.open(encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if line.strip():
                    groups.append(parse_group(line, f"{path}:{number}"))
    owner: dict[str, str] = {}
    for group in groups:
        for text in group.texts():
            key = _normal(text)
            if key in owner and owner[key] != group.where:
                raise DatasetError(f"{group.where}: {text!r} also appears in {owner[key]}")
            owner[key] = group.where
    return groups


def _files(paths: Iterable[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        files.extend(sorted(path.glob("*.jsonl")) if path.is_dir() else [path])
    return files


def pairs_of(group: Group) -> Iterator[dict[str, object]]:
    """The group as labelled pairs: (base prompt, variant), kind, label."""
    for kind, text in _labelled(group.paraphrases, group.traps):
        yield {
            "a": group.prompt,
            "b": text,
            "label": int(kind in PARAPHRASES),
            "kind": kind,
            "domain": group.domain,
        }


def summary(groups: list[Group]) -> dict[str, object]:
    traps = Counter(kind for g in groups for kind in g.traps)
    return {
        "groups": len(groups),
        "pairs": sum(1 for g in groups for _ in pairs_of(g)),
        "domains": dict(Counter(g.domain for g in groups).most_common()),
        "splits": dict(Counter(g.split for g in groups)),
        "trap_coverage": {k: round(traps[k] / max(1, len(groups)), 3) for k in TRAPS},
    }


def main(argv: list[str] | None = None) -> int:
    """`python -m semcache.quality.dataset check PATH...`: validate group files."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2 or args[0] != "check":
        print("usage: python -m semcache.quality.dataset check PATH...", file=sys.stderr)
        return 2
    try:
        groups = load_groups(Path(p) for p in args[1:])
    except (DatasetError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(summary(groups), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
