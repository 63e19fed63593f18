"""Bulk import and export at 100,000 entries: how long `semcache import` takes, whether
`semcache export` gives back every entry once, and what a second import of the same file
costs (it should store nothing).

Starts `semcache up`'s mesh (private Redis, embedder, 2 shards, router) on free loopback
ports; writes `ENTRIES` distinct entries (seeded, templated questions in 40 scopes: 4
tenants x 10 system prompts) as JSONL; runs the CLI as a user would (its own process,
through the router): import, export of every tenant, import again. Everything shares the
machine's cores, the CLI included. Results: bench/results/bulk.json.

    python -m bench bulk        (SEMCACHE_BENCH_ENTRIES=100000)
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.embed import machine
from bench.mesh import RESULTS, free_ports
from semcache.dev.mesh import LocalMesh

ENTRIES = int(os.environ.get("SEMCACHE_BENCH_ENTRIES", "100000"))
TENANTS = 4
SYSTEMS = 10
SUBJECTS = [
    "a passport", "a driving licence", "a bank account", "a router", "a laptop battery",
    "a sourdough starter", "a tomato plant", "a bicycle chain", "a dishwasher", "a printer",
    "a Python virtualenv", "a git branch", "a Kubernetes pod", "a Postgres index",
    "a credit card", "a smoke alarm", "a car tyre", "a lawn", "a cast iron pan", "a phone",
]  # fmt: skip
ASKS = [
    "How do I renew {s}", "How do I reset {s}", "What does it cost to replace {s}",
    "How long does {s} last", "Why does {s} fail", "How do I clean {s}",
    "Where can I buy {s}", "How do I set up {s}", "What is the best way to store {s}",
    "How do I fix {s}",
]  # fmt: skip
TAILS = ["", " in winter", " at home", " quickly", " for free", " in Canada", " in 2026"]


def entries(count: int, seed: int = 0) -> list[dict[str, Any]]:
    """`count` distinct entries: a templated question made unique by a number."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        question = rng.choice(ASKS).format(s=rng.choice(SUBJECTS)) + rng.choice(TAILS)
        out.append(
            {
                "tenant": f"bulk-{i % TENANTS}",
                "system_prompt": f"You are support agent {i % SYSTEMS}.",
                "prompt": f"{question}? (case {i})",
                "answer": f"Answer {i}: follow the steps in the manual, section {i % 97}.",
            }
        )
    return out


def cli(*args: str) -> tuple[float, str, str]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "semcache.cli", *args], capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0 and not (args[0] == "import" and done.stdout):  # 1: some failed
        raise RuntimeError(f"semcache {args[0]} failed: {done.stderr[-2000:]}")
    return seconds, done.stdout, done.stderr


def held(where: list[str]) -> dict[str, int]:
    """What the shards hold: entries, those stored without a vector (the embedder did not
    answer in time: matched exactly until re-embedded), entries evicted."""
    _, out, _ = cli("stats", *where, "--json")
    total = json.loads(out)["total"]
    return {name: total[name] for name in ("entries", "reembed_pending", "evictions")}


def key(entry: dict[str, Any]) -> tuple[str, str, str, str]:
    answer = entry["answer"]
    text = answer if isinstance(answer, str) else answer["text"]
    return entry["tenant"], entry.get("system_prompt", ""), entry["prompt"], text


def run() -> dict[str, Any]:
    wanted = entries(ENTRIES)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        source, exported = folder / "in.jsonl", folder / "out.jsonl"
        source.write_text("".join(json.dumps(e) + "\n" for e in wanted))
        mesh = LocalMesh(shards=2, ports=free_ports(), data_dir=folder / "redis")
        mesh.start()
        try:
            where = ["--address", mesh.router]
            seconds, out, _ = cli("import", str(source), *where, "--json")
            first = json.loads(out) | {"wall_seconds": round(seconds, 1)}
            first["failures"] = first["failures"][:20]
            first["mesh_after"] = held(where)
            seconds, _, _ = cli("export", *where, "--all-tenants", "-o", str(exported), "--json")
            back = [json.loads(line) for line in exported.read_text().splitlines()]
            export = {"wall_seconds": round(seconds, 1), "entries": len(back)}
            export["entries_per_second"] = round(len(back) / seconds, 1)
            seconds, out, _ = cli("import", str(source), *where, "--json")
            again = json.loads(out) | {"wall_seconds": round(seconds, 1)}
            again["failures"] = again["failures"][:20]
            again["mesh_after"] = held(where)
        finally:
            mesh.stop()
    mine = [e for e in back if e["tenant"].startswith("bulk-")]
    keys_back = [key(e) for e in mine]
    round_trip = {
        "imported": len(wanted),
        "exported": len(mine),
        "lost": len({key(e) for e in wanted} - set(keys_back)),
        "doubled": len(keys_back) - len(set(keys_back)),
        "extra": len(set(keys_back) - {key(e) for e in wanted}),
    }
    return {
        "machine": machine(),
        "entries": ENTRIES,
        "import": first,
        "export": export,
        "import_again": again,
        "round_trip": round_trip,
    }


def main() -> None:
    result = run()
    print(json.dumps(result, indent=2))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bulk.json").write_text(json.dumps(result, indent=2) + "\n")
