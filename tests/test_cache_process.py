"""`python -m cache_svc` as a user runs it: a real process, grpcurl, memory-only warning."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys

from semcache.dev.probe import free_port, wait_until_serving
from tests.test_embed_process import grpcurl


async def test_memory_only_shard_serves_grpcurl_and_says_so(embedder_address) -> None:
    # The embedder runs on this test process's event loop: block it nowhere.
    await asyncio.to_thread(_memory_only_shard, embedder_address)


def _memory_only_shard(embedder_address: str) -> None:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cache_svc",
            "--port",
            str(port),
            "--metrics-port",
            "-1",
            "--embedder",
            embedder_address,
            "--shard-id",
            "shard-x",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        address = f"127.0.0.1:{port}"
        wait_until_serving(address, process=process)
        assert {"semcache.v1.SemanticCache", "semcache.v1.Admin"} <= set(
            grpcurl(address, "list").split()
        )
        body = json.dumps({"scope": {"tenant": "cli"}, "prompt": "What is grpcurl?"})
        first = json.loads(grpcurl("-d", body, address, "semcache.v1.SemanticCache/Complete"))
        second = json.loads(grpcurl("-d", body, address, "semcache.v1.SemanticCache/Complete"))
        assert first["cache"]["status"] == "CACHE_STATUS_MISS"
        assert second["cache"]["status"] == "CACHE_STATUS_HIT"
        assert second["cache"]["shard"] == "shard-x"
        assert "degraded" not in first["cache"]  # it embedded: the embedder answered
        stats = json.loads(grpcurl(address, "semcache.v1.Admin/Stats"))
        assert stats["total"]["redis_state"] == "disabled"  # grpcurl prints proto names
        assert stats["total"]["embedder_state"] == "up"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)
    assert process.returncode == 0
    assert "memory-only" in process.stderr.read()


def test_threshold_out_of_range_is_refused_at_start() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cache_svc", "--threshold", "0.2e1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "threshold: must be a cosine similarity in [-1, 1], got 2.0" in done.stderr
