"""The `semcache` command line.

    semcache up                          start the local mesh (what `make run` runs)
    semcache ask "How do I reset my password?"        complete: cached answer or the LLM's
    semcache lookup PROMPT | store PROMPT ANSWER | invalidate | stats | ring
    semcache eval --pairs FILE.jsonl     hit quality of a hit policy on labelled pairs
    semcache warm --log FILE.jsonl --budget N   answer a query log's most-asked questions
    semcache import FILE.jsonl | semcache export > FILE.jsonl   entries in bulk

Calls go to `--address` ($SEMCACHE_ADDRESS, default 127.0.0.1:50051) with `--token`
($SEMCACHE_TOKEN) when the router has auth on. Output is for people; `--json` prints one
JSON object for scripts. `ask` and `lookup` print the answer on stdout and what the cache
did on stderr, so `$(semcache ask ...)` captures only the answer.
"""

from __future__ import annotations

import argparse
import sys

from semcache.cli import bulk, calls, quality, up, warm
from semcache.cli.common import parents
from semcache.client import SemcacheError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="semcache", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    shared = parents()
    for module in (calls, up, quality, warm, bulk):
        module.register(commands, shared)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except SemcacheError as e:
        hint = " (is the mesh up? `make run` starts it)" if "nothing answers" in str(e) else ""
        sys.exit(f"semcache: {e}{hint}")
