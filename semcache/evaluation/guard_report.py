"""How often each near-miss guard fires, per kind of pair: where a guard catches traps and
where it holds paraphrases back. No model, so it runs in seconds on any pairs file.

    python -m semcache.evaluation.guard_report --pairs data/pairs/groups --split train
    python -m semcache.evaluation.guard_report --pairs ../shared/data/qqp-dev.jsonl

Pairs without a kind are counted under their label ("label 0", "label 1").
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from semcache.evaluation import data
from semcache.quality import guards


def kind_of(pair: data.Pair) -> str:
    return pair.kind or f"label {pair.label}"


def fire_counts(pairs: Sequence[data.Pair]) -> tuple[Counter[str], dict[str, Counter[str]]]:
    """(pairs per kind, per kind how many pairs each guard fires on), with the guards as a
    shard reads them: the query `b` against the cached `a`."""
    totals: Counter[str] = Counter()
    fired: dict[str, Counter[str]] = {}
    for pair in pairs:
        kind = kind_of(pair)
        totals[kind] += 1
        fired.setdefault(kind, Counter()).update(guards.signals(pair.b, pair.a))
    return totals, fired


def table(totals: Counter[str], fired: dict[str, Counter[str]]) -> str:
    header = f"{'kind':12s} {'pairs':>6s} " + " ".join(f"{g:>9s}" for g in guards.GUARDS)
    rows = [header]
    for kind in sorted(totals):
        n = totals[kind]
        cells = " ".join(f"{100 * fired[kind][g] / n:8.1f}%" for g in guards.GUARDS)
        rows.append(f"{kind:12s} {n:6d} {cells}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m semcache.evaluation.guard_report", description=__doc__
    )
    parser.add_argument("--pairs", type=Path, required=True, help="JSONL, or a groups dir")
    parser.add_argument("--split", default="all", help="all, test (train and dev for groups)")
    args = parser.parse_args(argv)
    pairs = data.select(data.load_pairs(args.pairs), args.split)
    print(table(*fire_counts(pairs)))


if __name__ == "__main__":
    main()
