"""The HTTP front against its own OpenAPI description: a bounded schemathesis run (examples,
boundary and negative cases, fuzzing) over the running front, a shard with the echo LLM
and the router, with every check: no 5xx, documented statuses, content types and headers,
responses that match their schemas, invalid requests refused and valid ones served."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from pathlib import Path

import httpx
import pytest

from cache_svc.service import running_shard
from router_svc.http import running_http_front
from router_svc.service import running_router
from tests.conftest import router_config, shard_config

#: A fixed seed: the same cases every run (a failure reproduces); more examples or other
#: seeds by hand: `st run http://HOST:PORT/openapi.json --seed N --max-examples M`.
SEED = 1
MAX_EXAMPLES = 60


@contextlib.asynccontextmanager
async def echo_front(embedder_address: str, redis_url: str):  # type: ignore[no-untyped-def]
    async with contextlib.AsyncExitStack() as stack:
        shard, _ = await stack.enter_async_context(
            running_shard(shard_config(embedder=embedder_address, redis=redis_url))
        )
        router, _ = await stack.enter_async_context(
            running_router(router_config(shards=shard.address))
        )
        port = await stack.enter_async_context(
            running_http_front(router.address, models=["gpt-test"])
        )
        yield f"http://127.0.0.1:{port}"


@pytest.mark.timeout(300)  # schemathesis stops itself at --max-time; the mesh starts first
async def test_the_front_serves_its_description_and_holds_to_it(
    embedder_address, redis_server, tmp_path: Path
) -> None:
    st = shutil.which("st", path=str(Path(__file__).parents[1] / ".venv" / "bin")) or shutil.which(
        "st"
    )
    assert st, "schemathesis is missing: `make setup` installs it (the dev extras)"
    async with echo_front(embedder_address, redis_server.url) as url:
        async with httpx.AsyncClient() as http:
            document = (await http.get(f"{url}/openapi.json")).json()
        assert document["openapi"].startswith("3.1")
        assert {"/v1/chat/completions", "/v1/models", "/healthz"} <= set(document["paths"])
        run = await asyncio.create_subprocess_exec(
            st,
            "run",
            f"{url}/openapi.json",
            "--checks",
            "all",
            "--max-examples",
            str(MAX_EXAMPLES),
            "--seed",
            str(SEED),
            "--max-time",
            "90",
            "--request-timeout",
            "20",
            "--warnings",
            "off",
            "--report-dir",
            str(tmp_path),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=tmp_path,
        )
        output, _ = await asyncio.wait_for(run.communicate(), timeout=300)
    text = output.decode(errors="replace")
    assert run.returncode == 0, text[-6000:]
    assert "3 selected" in text and "generated" in text, text[-2000:]
