"""Commands against a running mesh: ask, lookup, store, invalidate, stats, ring. Each
command's parser sits beside its handler."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from semcache.cli.common import Parents, client, emit, scope, table
from semcache.client import CacheInfo, Completion


def _describe(cache: CacheInfo) -> str:
    """One line on what the cache did, e.g. `hit (semantic, similarity 0.962 >= 0.900)`."""
    ms = f"{cache.timings.total_ms:.1f} ms"
    p = "" if cache.hit_probability is None else f"p {cache.hit_probability:.2f}"
    if cache.status == "hit":
        model = f", {p} >= {cache.hit_cut:.2f}" if p and cache.hit_cut is not None else ""
        line = (
            f"hit ({cache.kind}, similarity {cache.similarity:.3f} >= {cache.threshold:.3f}"
            f"{model})  {ms}  shard {cache.shard}  entry {cache.entry_id}"
        )
        if cache.matched_prompt:
            line += f"\n  matched: {cache.matched_prompt!r}"
    elif cache.status == "bypass":
        line = f"bypass (lookup skipped)  {ms}  shard {cache.shard}"
    else:
        if cache.guard == "model" and p and cache.hit_cut is not None:
            why = f"best similarity {cache.similarity:.3f}, {p} < {cache.hit_cut:.2f}, "
        elif cache.guard:
            why = f"best similarity {cache.similarity:.3f}, {cache.guard} guard, "
        elif cache.similarity:
            why = f"best similarity {cache.similarity:.3f} < {cache.threshold:.3f}, "
        else:
            why = ""
        line = (
            f"miss ({why}{'stored' if cache.stored else 'not stored'})  {ms}  shard {cache.shard}"
        )
    if cache.degraded:
        line += f"\n  degraded: {', '.join(cache.degraded)}"
    return line


def _answer(args: argparse.Namespace, result: Completion) -> None:
    if args.json:
        emit(args, result, "")
        return
    print(_describe(result.cache), file=sys.stderr, flush=True)
    if result.text is not None:
        print(result.text)


def add_ask(commands: Any, parents: Parents) -> None:
    p = commands.add_parser(
        "ask",
        parents=[parents.connection, parents.scope, parents.read],
        help="the cached answer, or the LLM's on a miss",
    )
    p.add_argument("--no-cache", action="store_true", help="skip the lookup")
    p.add_argument("--no-store", action="store_true", help="do not store the answer")
    p.set_defaults(run=ask)


def ask(args: argparse.Namespace) -> None:
    with client(args) as cache:
        _answer(
            args,
            cache.complete(
                args.prompt,
                category=args.category,
                min_similarity=args.min_similarity,
                no_cache=args.no_cache,
                no_store=args.no_store,
                **scope(args),
            ),
        )


def add_lookup(commands: Any, parents: Parents) -> None:
    p = commands.add_parser(
        "lookup",
        parents=[parents.connection, parents.scope, parents.read],
        help="look up only, no LLM call",
    )
    p.set_defaults(run=lookup)


def lookup(args: argparse.Namespace) -> None:
    with client(args) as cache:
        _answer(
            args,
            cache.lookup(
                args.prompt,
                category=args.category,
                min_similarity=args.min_similarity,
                **scope(args),
            ),
        )


def add_store(commands: Any, parents: Parents) -> None:
    p = commands.add_parser(
        "store", parents=[parents.connection, parents.scope], help="store an answer for a prompt"
    )
    p.add_argument("prompt")
    p.add_argument("answer")
    p.add_argument("--ttl", type=int, default=None, help="seconds (default: the shard's)")
    p.set_defaults(run=store)


def store(args: argparse.Namespace) -> None:
    with client(args) as cache:
        stored = cache.store(
            args.prompt, args.answer, ttl=args.ttl, category=args.category, **scope(args)
        )
    emit(
        args,
        stored,
        f"stored entry {stored.entry_id} on shard {stored.shard}"
        f"{' (replaced the previous answer)' if stored.replaced else ''}",
    )


def add_invalidate(commands: Any, parents: Parents) -> None:
    p = commands.add_parser(
        "invalidate", parents=[parents.connection, parents.scope], help="remove cached entries"
    )
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--entry", help="one entry, by id")
    target.add_argument(
        "--namespace",
        action="store_true",
        help="every entry of the scope given by --tenant/--model/--system",
    )
    target.add_argument("--all", action="store_true", help="every entry of --tenant")
    p.set_defaults(run=invalidate)


def invalidate(args: argparse.Namespace) -> None:
    with client(args) as cache:
        removed = cache.invalidate(
            entry_id=args.entry, namespace=args.namespace, tenant_wide=args.all, **scope(args)
        )
    emit(args, {"removed": removed}, f"removed {removed} entr{'y' if removed == 1 else 'ies'}")


def add_stats(commands: Any, parents: Parents) -> None:
    p = commands.add_parser("stats", parents=[parents.connection], help="per-shard counters")
    p.set_defaults(run=stats)


def stats(args: argparse.Namespace) -> None:
    with client(args) as cache:
        result = cache.stats()
    rows = [("shard", "address", "entries", "namespaces", "hits", "misses", "redis", "embedder")]
    for s in (*result.shards, result.total):
        if not s.reachable and s.shard != "total":
            rows.append((s.shard, s.address, "unreachable", "", "", "", "", ""))
            continue
        rows.append(
            (
                s.shard,
                s.address,
                str(s.entries),
                str(s.namespaces),
                str(s.hits),
                str(s.misses),
                s.redis_state,
                s.embedder_state,
            )
        )
    emit(args, result, table(rows))


def add_ring(commands: Any, parents: Parents) -> None:
    p = commands.add_parser(
        "ring", parents=[parents.connection, parents.scope], help="ring members; owners of a scope"
    )
    p.add_argument(
        "--scoped",
        action="store_true",
        help="also show the namespace and owners of the scope given",
    )
    p.set_defaults(run=ring)


def ring(args: argparse.Namespace) -> None:
    with client(args) as cache:
        asked = scope(args) | ({"tenant": args.tenant} if args.scoped else {})
        result = cache.ring(**asked)
    rows = [("member", "address", "share", "healthy", "in flight")]
    rows += [
        (m.id, m.address, f"{m.share:.1%}", "yes" if m.healthy else "NO", str(m.in_flight))
        for m in result.members
    ]
    text = (
        table(rows) + f"\n{result.vnodes} virtual nodes per member, bounded load c = "
        f"{result.load_factor:g}"
    )
    if result.namespace:
        text += f"\nnamespace {result.namespace}: owners {' > '.join(result.owners)}"
    emit(args, result, text)


def register(commands: Any, parents: Parents) -> None:
    for add in (add_ask, add_lookup, add_store, add_invalidate, add_stats, add_ring):
        add(commands, parents)
