"""`semcache warm`: a query log clustered by meaning, its most-asked questions answered
through the router before users ask them again (a real embedder, shard and router; the CLI
in its own process)."""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from cache_svc.service import running_shard
from router_svc.service import running_router
from semcache import warmup
from semcache.client import AsyncClient
from tests.conftest import router_config, shard_config

#: Three questions, asked 9, 4 and 1 times in several wordings.
LOG = [
    {"prompt": "How do I renew my passport?", "count": 5},
    {"prompt": "How can I renew my passport?", "count": 3},
    {"prompt": "What do I need to renew my passport?"},
    {"prompt": "How do I reset my router?", "count": 2},
    {"prompt": "How can I reset my router?", "count": 2},
    {"prompt": "What is the boiling point of water at sea level?"},
]


def test_the_plan_puts_the_most_asked_cluster_first_with_its_most_asked_wording() -> None:
    counts = Counter({"a1": 5, "a2": 3, "b1": 1, "b2": 1, "c": 2})
    base = np.eye(3, dtype=np.float32)
    vectors = np.array([base[0], base[0] * 0.9 + 0.1, base[1], base[1] * 0.9 + 0.1, base[2]])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    picks = warmup.plan(counts, vectors, budget=2)  # up to 4 clusters of 5 prompts
    assert picks[0].prompt == "a1" and picks[0].asked >= 5
    assert picks[0].reason.startswith("most asked")
    assert [p.asked for p in picks] == sorted((p.asked for p in picks), reverse=True)
    assert sum(p.asked for p in picks) == sum(counts.values())
    assert warmup.plan(counts, vectors, budget=0) == []


async def run_warm(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "semcache.cli",
        "warm",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    return process.returncode or 0, out.decode(), err.decode()


async def test_warm_answers_the_most_asked_question_first_within_its_budget(
    embedder_address, redis_server, tenant, tmp_path: Path
) -> None:
    log = tmp_path / "queries.jsonl"
    lines = [json.dumps(entry) for entry in LOG]
    lines.insert(2, "{not json")
    lines.insert(4, json.dumps({"prompt": "", "count": 1}))
    log.write_text("\n".join(lines) + "\n")
    async with (
        running_shard(shard_config(embedder=embedder_address, redis=redis_server.url)) as (
            shard,
            _,
        ),
        running_router(router_config(shards=shard.address)) as (router, _),
    ):
        where = ["--address", router.address, "--embedder", embedder_address]
        where += ["--tenant", tenant, "--log", str(log)]
        code, out, err = await run_warm(*where, "--budget", "1", "--json")
        assert code == 0, err
        report = json.loads(out)
        # Bad lines are named by number and skipped.
        assert f"{log}:3: skipped" in err and f"{log}:5: skipped" in err
        assert report["lines_skipped"] == 2 and report["requests"] == 14
        assert report["llm_calls"] == 1 and report["budget"] == 1
        first = report["picks"][0]
        assert first["prompt"] == "How do I renew my passport?" and first["result"] == "stored"
        assert first["asked"] >= 8 and "most asked" in first["why"]
        assert all(p["result"] != "stored" for p in report["picks"][1:])
        async with AsyncClient(router.address, tenant=tenant) as cache:
            assert (await cache.lookup("How can I renew my passport?")).hit
            assert not (await cache.lookup("How can I reset my router?")).hit

        # Again with more budget: the warm question costs nothing, the next one is asked.
        code, out, err = await run_warm(*where, "--budget", "5", "--json")
        assert code == 0, err
        report = json.loads(out)
        results = {p["prompt"]: p["result"] for p in report["picks"]}
        assert results["How do I renew my passport?"] == "already cached"
        async with AsyncClient(router.address, tenant=tenant) as cache:
            assert (await cache.lookup("How can I reset my router?")).hit

        # A cost cap below one call's cost is refused before anything is asked.
        code, out, err = await run_warm(
            *where, "--budget", "5", "--max-cost", "0.01", "--cost-per-call", "0.02"
        )
        assert code != 0 and "pays for no call" in err
