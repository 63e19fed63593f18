"""`semcache import FILE.jsonl` and `semcache export > FILE.jsonl`: entries in bulk.

The format (`semcache.bulk`) is one JSON object a line, the same both ways:

    {"prompt": "How do I reset my password?", "answer": "Open Settings, then ...",
     "tenant": "acme", "model": "gpt-4o", "system_prompt": "...", "params": {...},
     "history": [...], "category": "factual", "ttl_seconds": 86400, "metadata": {...}}

Import sends every entry on one Import stream through the router, `--concurrency` in
flight at most; a line that is not an entry (bad JSON, a missing prompt, a field out of
range) is reported with its number and skipped, the rest go on, and a summary ends the
run (exit status 1 when any line failed). Storing what is stored already changes nothing,
so an import cut short is resumed by running it again. Export streams every entry the
token may see: of `--tenant` (the token's by default), of one `--namespace`, or of all
tenants (`--all-tenants`, operator tokens). Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import IO, Any

from semcache.cli.common import Parents, async_client
from semcache.client import SemcacheError


def register(commands: Any, parents: Parents) -> None:
    p = commands.add_parser(
        "import",
        parents=[parents.connection],
        help="store entries from a JSONL file (resumable: run it again)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", type=Path, help="JSONL, one entry a line ('-': stdin)")
    p.add_argument("--tenant", default="", help="the tenant of entries that name none")
    p.add_argument("--concurrency", type=int, default=128, help="entries in flight at most")
    p.set_defaults(run=run_import)
    p = commands.add_parser(
        "export",
        parents=[parents.connection],
        help="write stored entries as JSONL (stdout or --output)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--tenant", default="", help="default: the token's, else 'default'")
    p.add_argument("--namespace", default="", help="only this namespace (32 hex)")
    p.add_argument("--all-tenants", action="store_true", help="every tenant (operator token)")
    p.add_argument("--output", "-o", type=Path, default=None, help="default: stdout")
    p.set_defaults(run=run_export)


# -- import -------------------------------------------------------------------------------


def _open(path: Path) -> AbstractContextManager[IO[str]]:
    if str(path) == "-":
        return nullcontext(sys.stdin)
    try:
        return path.open(encoding="utf-8")
    except OSError as e:
        sys.exit(f"semcache: {path}: {e.strerror or e}")


def _lines(path: Path) -> int | None:
    """How many lines the file has (for the progress bar); None for stdin."""
    if str(path) == "-":
        return None
    with path.open("rb") as f:
        return sum(1 for _ in f)


class ImportRun:
    """One import's bookkeeping: which line each sent entry came from, what happened."""

    def __init__(self) -> None:
        self.line_of: list[int] = []  # entry index -> line number
        self.counts: Counter[str] = Counter()
        self.failures: list[str] = []

    def entries(self, lines: IO[str], report: Any) -> Iterator[dict[str, Any]]:
        """The file's entries; a line that is not JSON is reported and skipped here."""
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            self.counts["lines"] += 1
            try:
                entry = json.loads(line)
            except ValueError as e:
                self.failed(report, number, f"not JSON ({e})")
                continue
            self.line_of.append(number)
            yield entry

    def failed(self, report: Any, number: int, why: str) -> None:
        self.counts["failed"] += 1
        message = f"line {number}: {why}"
        self.failures.append(message)
        report(message)


def run_import(args: argparse.Namespace) -> None:
    if args.concurrency < 1:
        sys.exit("semcache: --concurrency: at least 1")
    from tqdm import tqdm

    total = _lines(args.file)
    run = ImportRun()
    started = time.perf_counter()
    with (
        _open(args.file) as lines,
        tqdm(total=total, unit="entry", desc="import", file=sys.stderr, disable=args.json) as bar,
    ):
        report = bar.write if not args.json else (lambda m: print(m, file=sys.stderr))

        async def go() -> None:
            async with async_client(args) as cache:
                source = run.entries(lines, report)
                async for done in cache.import_entries(source, window=args.concurrency):
                    number = run.line_of[done.index]
                    if done.error is not None:
                        run.failed(report, number, str(done.error))
                    else:
                        assert done.stored is not None
                        stored = done.stored
                        run.counts[
                            "unchanged"
                            if stored.unchanged
                            else "replaced"
                            if stored.replaced
                            else "new"
                        ] += 1
                    bar.update(1)

        try:
            asyncio.run(go())
        except SemcacheError as e:
            sys.exit(f"semcache: import stopped: {e} (run it again to resume)")
    seconds = time.perf_counter() - started
    stored = run.counts["new"] + run.counts["replaced"] + run.counts["unchanged"]
    summary = {
        "lines": run.counts["lines"],
        "stored": stored,
        "new": run.counts["new"],
        "replaced": run.counts["replaced"],
        "unchanged": run.counts["unchanged"],
        "failed": run.counts["failed"],
        "seconds": round(seconds, 2),
        "entries_per_second": round(stored / seconds, 1) if seconds else 0.0,
    }
    if args.json:
        print(json.dumps(summary | {"failures": run.failures}, indent=2))
    else:
        print(
            f"imported {stored} entries ({summary['new']} new, {summary['replaced']} replaced, "
            f"{summary['unchanged']} unchanged), {summary['failed']} failed, "
            f"in {summary['seconds']} s ({summary['entries_per_second']}/s)",
            file=sys.stderr,
        )
    if run.counts["failed"]:
        sys.exit(1)


# -- export -------------------------------------------------------------------------------


def run_export(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    started = time.perf_counter()
    namespaces: set[str] = set()
    count = 0
    output: AbstractContextManager[IO[str]]
    if args.output is None:
        output = nullcontext(sys.stdout)
    else:
        try:
            output = args.output.open("w", encoding="utf-8")
        except OSError as e:
            sys.exit(f"semcache: {args.output}: {e.strerror or e}")
    with (
        output as out,
        tqdm(unit="entry", desc="export", file=sys.stderr, disable=args.json) as bar,
    ):

        async def go() -> None:
            nonlocal count
            async with async_client(args) as cache:
                async for entry in cache.export(
                    tenant=args.tenant or None,
                    namespace=args.namespace,
                    all_tenants=args.all_tenants,
                    timeout=None,  # as long as it takes; a silent shard is an error
                ):
                    out.write(json.dumps(entry, ensure_ascii=False) + "\n")
                    namespaces.add(entry["namespace"])
                    count += 1
                    bar.update(1)

        try:
            asyncio.run(go())
        except SemcacheError as e:
            sys.exit(f"semcache: export failed after {count} entries: {e}")
    seconds = round(time.perf_counter() - started, 2)
    summary = {"entries": count, "namespaces": len(namespaces), "seconds": seconds}
    if args.json:
        print(json.dumps(summary), file=sys.stderr)
    else:
        print(
            f"exported {count} entries of {len(namespaces)} namespaces in {seconds} s",
            file=sys.stderr,
        )
