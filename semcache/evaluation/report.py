"""The evaluation's report: `report()` runs a protocol and returns a typed `Report`, whose
`to_json()` is the `semcache eval --json` document (schema in docs/eval.md);
`format_table` renders it for people.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from semcache.evaluation.data import Pair, Vectors
from semcache.evaluation.metrics import evaluate_pairs, evaluate_stream
from semcache.quality.policy import HitPolicy

SCHEMA = 1
PROTOCOLS = ("pairs", "stream")


@dataclass(frozen=True, slots=True)
class Report:
    """One evaluation: where the pairs came from, how they were judged, and the rows
    (`policy`: the policy's metrics and name; `sweep`: one row per static threshold;
    `comparison`: the policy against the static threshold of its recall; `retrieval`: the
    stream protocol's search, None for pairs). Rows are plain dicts, as `to_json` writes."""

    data: str
    protocol: str
    split: str
    pairs: int
    queries: int
    entries: int
    model: str
    policy: dict[str, Any]
    sweep: list[dict[str, Any]]
    comparison: dict[str, Any]
    seconds: dict[str, float]
    retrieval: dict[str, Any] | None = None
    schema: int = SCHEMA

    def to_json(self) -> dict[str, Any]:
        """The `semcache eval --json` document."""
        out: dict[str, Any] = {
            "schema": self.schema,
            "data": self.data,
            "protocol": self.protocol,
            "split": self.split,
            "pairs": self.pairs,
            "queries": self.queries,
            "entries": self.entries,
            "model": self.model,
            "policy": self.policy,
            "sweep": self.sweep,
            "comparison": self.comparison,
            "seconds": self.seconds,
        }
        if self.retrieval is not None:
            out["retrieval"] = self.retrieval
        return out


def report(
    *,
    pairs: Sequence[Pair],
    vectors: Vectors,
    policy: HitPolicy,
    protocol: str,
    policy_name: str = "",
    data: str = "",
    split: str = "all",
    embed_seconds: float = 0.0,
) -> Report:
    """The whole evaluation of `policy` on `pairs` under `protocol` (pairs or stream)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}; got {protocol!r}")
    if not pairs:
        raise ValueError("no pairs to evaluate")
    started = time.perf_counter()
    run = evaluate_stream if protocol == "stream" else evaluate_pairs
    result = run(pairs, vectors, policy)
    return Report(
        data=data,
        protocol=protocol,
        split=split,
        pairs=len(pairs),
        queries=result["queries"],
        entries=result["entries"],
        model=vectors.model,
        policy={"name": policy_name} | result["policy"],
        sweep=result["sweep"],
        comparison=result["comparison"],
        seconds={
            "embed": round(embed_seconds, 3),
            "evaluate": round(time.perf_counter() - started, 3),
        },
        retrieval=result.get("retrieval"),
    )


def _number(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}f}"


def format_table(result: Report) -> str:
    """The report for people: the policy, then every other swept threshold (and the one
    matched on recall, marked *), then the comparison in one sentence."""
    stream = result.protocol == "stream"
    columns = (
        [
            ("hit rate", "hit_rate"),
            ("recall", "recall"),
            ("precision", "precision"),
            ("wrong-hit rate", "wrong_hit_rate"),
            ("wrong hits", "wrong_hits"),
        ]
        if stream
        else [
            ("hits", "hits"),
            ("precision", "precision"),
            ("recall", "recall"),
            ("F1", "f1"),
            ("accuracy", "accuracy"),
            ("FP", "fp"),
            ("FP rate", "false_positive_rate"),
        ]
    )
    if "traps_blocked" in result.policy:
        columns.append(("traps blocked", "traps_blocked"))
    comparison = result.comparison
    policy = result.policy
    rows = [("", "threshold", *(name for name, _ in columns))]
    rows.append(
        (
            f"policy {policy['name']}".strip(),
            _number(policy["threshold"], 2),
            *(_number(policy[key]) for _, key in columns),
        )
    )
    for r in result.sweep:
        matched = r["threshold"] == comparison["static_threshold"]
        if matched or round(r["threshold"] * 100) % 2 == 0:
            rows.append(
                (
                    "static *" if matched else "static",
                    f"{r['threshold']:.2f}",
                    *(_number(r[key]) for _, key in columns),
                )
            )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        f"{Path(result.data).name or 'pairs'}: {result.protocol} protocol, "
        f"split {result.split}, {result.pairs:,} pairs"
        + (
            f", {result.queries:,} queries against {result.entries:,} cached entries"
            if stream
            else ""
        ),
        f"model {result.model}; embedding {result.seconds['embed']:.1f} s, "
        f"evaluation {result.seconds['evaluate']:.1f} s",
        "",
    ]
    lines += [
        "  ".join(
            c.rjust(w) if i else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]
    metric = comparison["metric"].replace("_", " ")
    mine, theirs = comparison["policy"], comparison["static"]
    ratio = comparison["ratio"]
    lines += [
        "",
        f"* at the policy's recall ({_number(mine['recall'])}), static "
        f"{comparison['static_threshold']:.2f} (recall {_number(theirs['recall'])}"
        f"{'' if comparison['matched'] else ', the highest swept'}) has {metric} "
        f"{_number(theirs[comparison['metric']], 4)}; the policy "
        f"{_number(mine[comparison['metric']], 4)}"
        + (f" ({ratio:.2f}x)" if ratio is not None else ""),
    ]
    if result.retrieval is not None:
        lines.append(
            f"  right answer ranked first for {_number(result.retrieval['top1_right'])} of "
            "true duplicates (the recall ceiling of any policy)"
        )
    if policy.get("guards"):
        vetoes = ", ".join(f"{g} {n:,}" for g, n in sorted(policy["guards"].items()))
        lines.append(f"  guard vetoes: {vetoes}")
    return "\n".join(lines)
