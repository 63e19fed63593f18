"""`semcache warm --log queries.jsonl --budget N`: answer the questions users ask most
before they ask them again.

The log is one JSON object a line: `{"prompt": "...", "count": 3}` (`count` optional, 1 by
default); a line that is not one is reported with its number and skipped. All of it is one
scope, the one the scope flags name (`--tenant --model --system`, as `semcache ask`): split
a log of many scopes by scope first. The prompts are embedded by the mesh's embedder
(`--embedder`), clustered (`semcache.warmup`), and the representative of each cluster,
most-asked first, goes through read-through Complete: a miss asks the LLM and stores the
answer, a hit (already cached) costs nothing. It stops when `--budget` LLM calls are spent,
or `--max-cost` at `--cost-per-call`. A report says which clusters it chose and why.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from semcache import warmup
from semcache.cli.common import Parents, client, scope, table, write_json
from semcache.client import Client, SemcacheError
from semcache.tls import TlsFiles
from semcache.v1 import embedder_pb2, embedder_pb2_grpc

#: Texts per Embed call (the embedder's limit is 256).
EMBED_BATCH = 128


def add_warm(commands: Any, parents: Parents) -> None:
    p = commands.add_parser(
        "warm",
        parents=[parents.connection, parents.scope],
        help="answer a query log's most-asked questions ahead of time",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--log", type=Path, required=True, help="JSONL: {prompt, count?} a line")
    p.add_argument("--budget", type=int, required=True, help="LLM calls to spend at most")
    p.add_argument("--max-cost", type=float, default=None, help="USD to spend at most")
    p.add_argument(
        "--cost-per-call", type=float, default=None, help="USD an LLM call costs (--max-cost)"
    )
    p.add_argument(
        "--embedder",
        default=os.environ.get("SEMCACHE_EMBEDDER", "127.0.0.1:50053"),
        help="the mesh's embedder (default: $SEMCACHE_EMBEDDER or %(default)s)",
    )
    p.add_argument("--concurrency", type=int, default=4, help="calls in flight")
    p.add_argument("--report", type=Path, default=None, help="write the report here (JSON)")
    p.add_argument("--seed", type=int, default=0, help="the clustering's seed")
    p.set_defaults(run=warm)


def read_log(path: Path) -> tuple[Counter[str], list[str]]:
    """The prompts and their counts; the problems of the lines skipped."""
    counts: Counter[str] = Counter()
    problems: list[str] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        sys.exit(f"semcache: {path}: {e}")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            prompt, count = entry["prompt"], entry.get("count", 1)
            if not isinstance(prompt, str) or not prompt.strip():
                raise ValueError("prompt must be a non-empty string")
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise ValueError("count must be a positive integer")
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            problems.append(f"{path}:{number}: skipped: {e!r}")
            continue
        counts[prompt.strip()] += count
    return counts, problems


def embed(args: argparse.Namespace, prompts: list[str]) -> np.ndarray:
    """The prompts' vectors, from the mesh's embedder (TLS as the router's flags say)."""
    if args.tls_ca or args.tls_cert or args.tls_key:
        tls = TlsFiles.read(ca=args.tls_ca, cert=args.tls_cert, key=args.tls_key)
        channel = grpc.secure_channel(args.embedder, tls.channel_credentials())
    else:
        channel = grpc.insecure_channel(args.embedder)
    stub = embedder_pb2_grpc.EmbedderStub(channel)
    vectors = []
    try:
        for start in range(0, len(prompts), EMBED_BATCH):
            batch = prompts[start : start + EMBED_BATCH]
            reply = stub.Embed(embedder_pb2.EmbedRequest(texts=batch), timeout=args.timeout)
            vectors += [np.frombuffer(e.vector, dtype="<f4") for e in reply.embeddings]
    except grpc.RpcError as e:
        sys.exit(f"semcache: the embedder at {args.embedder}: {e.code().name}: {e.details()}")
    finally:
        channel.close()
    return np.vstack(vectors)


def budget_of(args: argparse.Namespace) -> int:
    budget = args.budget
    if budget < 1:
        sys.exit("semcache: --budget must be at least 1")
    if args.max_cost is not None:
        if not args.cost_per_call or args.cost_per_call <= 0:
            sys.exit("semcache: --max-cost needs --cost-per-call (USD, > 0)")
        budget = min(budget, int(args.max_cost // args.cost_per_call))
        if budget < 1:
            sys.exit(
                f"semcache: --max-cost {args.max_cost} pays for no call at --cost-per-call "
                f"{args.cost_per_call}"
            )
    return budget


def ask_in_turn(
    cache: Client, picks: list[warmup.Pick], budget: int, args: argparse.Namespace
) -> tuple[list[dict[str, Any]], int]:
    """Completes the picks most-asked first, at most `--concurrency` at once, never more
    misses than the budget left; returns each pick's row and the LLM calls spent."""
    from tqdm import tqdm  # a progress bar where warming runs

    rows: list[dict[str, Any]] = []
    spent = 0
    queue = list(picks)
    bar = tqdm(total=budget, unit="call", desc="LLM calls", disable=args.json, file=sys.stderr)
    with ThreadPoolExecutor(max_workers=max(1, args.concurrency)) as pool:
        while queue and spent < budget:
            size = min(max(1, args.concurrency), budget - spent)
            batch, queue = queue[:size], queue[size:]
            futures = [
                pool.submit(cache.complete, pick.prompt, category=args.category, **scope(args))
                for pick in batch
            ]
            for pick, future in zip(batch, futures, strict=True):
                row = {"prompt": pick.prompt, "asked": pick.asked, "share": round(pick.share, 4)}
                row |= {"wordings": pick.wordings, "why": pick.reason}
                try:
                    result = future.result()
                except SemcacheError as e:
                    row["result"] = f"failed: {e}"
                else:
                    if result.hit:
                        row["result"] = "already cached"
                    else:
                        row["result"] = "stored" if result.cache.stored else "answered"
                        spent += 1
                        bar.update(1)
                rows.append(row)
    bar.close()
    for pick in queue:
        rows.append({"prompt": pick.prompt, "asked": pick.asked, "result": "not asked: budget"})
    return rows, spent


def warm(args: argparse.Namespace) -> None:
    try:
        import sklearn  # noqa: F401
    except ImportError as e:
        sys.exit(f"semcache warm needs {e.name}: pip install 'semcache[warm]'")
    counts, problems = read_log(args.log)
    for problem in problems:
        print(problem, file=sys.stderr)
    budget = budget_of(args)
    if not counts:
        sys.exit(f"semcache: {args.log}: no prompts")
    prompts = list(counts)
    picks = warmup.plan(counts, embed(args, prompts), budget, seed=args.seed)
    with client(args) as cache:
        rows, spent = ask_in_turn(cache, picks, budget, args)
    report = {
        "log": str(args.log),
        "requests": sum(counts.values()),
        "distinct_prompts": len(prompts),
        "lines_skipped": len(problems),
        "clusters": len(picks),
        "budget": budget,
        "llm_calls": spent,
        "cost_usd": spent * args.cost_per_call if args.cost_per_call else None,
        "picks": rows,
    }
    if args.report is not None:
        write_json(args.report, report)
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
        return
    header = [("asked", "share", "result", "why", "prompt")]
    body = [
        (str(r["asked"]), f"{r.get('share', 0):.1%}", r["result"], r.get("why", ""), r["prompt"])
        for r in rows
    ]
    print(table(header + body))
    print(
        f"\n{report['requests']} requests, {len(prompts)} distinct prompts, {len(picks)} "
        f"clusters; {spent} LLM calls of a budget of {budget}; {len(problems)} lines skipped"
    )


def register(commands: Any, parents: Parents) -> None:
    add_warm(commands, parents)
