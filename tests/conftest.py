"""Shared fixtures: the real int8 model and a real embedder server on 127.0.0.1:0."""

from __future__ import annotations

import asyncio
import inspect
import json
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import pytest_asyncio

from embed_svc.build import recipe
from embed_svc.model import OnnxEmbedder, Tokens
from embed_svc.service import running_embedder
from router_svc.pool import ShardPool
from semcache.dev.localredis import LocalRedis
from semcache.dev.probe import free_port
from semcache.runtime.config import EmbedderConfig, RouterConfig, ShardConfig
from semcache.runtime.server import GrpcServer
from semcache.v1 import embedder_pb2, embedder_pb2_grpc
from tests.hangs import TaskDump

DATA = Path(__file__).parent / "data"


_task_dump = TaskDump()


@pytest_asyncio.fixture(scope="session", loop_scope="session", autouse=True)
async def _session_loop() -> None:
    """The loop every test runs on, for `pytest_timeout_set_timer`."""
    _task_dump.loop = asyncio.get_running_loop()


@pytest.hookimpl(tryfirst=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> None:
    """A hung test's report shows where each asyncio task waits (`tests/hangs.py`);
    returning None leaves pytest-timeout's own timer to be set after this."""
    _task_dump.arm(settings.timeout)


@pytest.hookimpl(tryfirst=True)
def pytest_timeout_cancel_timer(item: pytest.Item) -> None:
    _task_dump.disarm()


def load_pairs() -> list[dict]:
    with (DATA / "pairs.jsonl").open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def sentences() -> list[str]:
    return [s for s in recipe.SENTENCES.read_text(encoding="utf-8").splitlines() if s.strip()]


@pytest.fixture(scope="session")
def model() -> OnnxEmbedder:
    return OnnxEmbedder()


class GatedModel:
    """The real model, but `run` waits until the test opens the gate (and counts batches).

    Lets a test hold the inference workers busy at a moment of its choosing, so queueing,
    batching and back-pressure can be checked without depending on timing luck.
    """

    def __init__(self, model: OnnxEmbedder) -> None:
        self._model = model
        self.gate = threading.Event()
        self.batches: list[int] = []
        self.model_id, self.dimension, self.built = model.model_id, model.dimension, model.built

    def tokenize(self, texts: list[str]) -> list[Tokens]:
        return self._model.tokenize(texts)

    def run(self, batch: list[Tokens]) -> np.ndarray:
        self.batches.append(len(batch))
        if not self.gate.wait(timeout=30):
            raise TimeoutError("test never opened the gate")
        return self._model.run(batch)


def embedder_config(**overrides: object) -> EmbedderConfig:
    settings: dict[str, object] = {"port": 0, "metrics_port": -1, "grace_seconds": 0}
    return EmbedderConfig(**(settings | overrides))


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def embedder_server() -> AsyncIterator[GrpcServer]:
    # No model watch: the session's embedder serves one model throughout, whatever tests do
    # to the model cache meanwhile (a tuned recipe hashed while a test edits its inputs, a
    # cache dir pointed elsewhere) would otherwise switch it under later tests.
    async with running_embedder(embedder_config(metrics_port=0, model_watch_seconds=0)) as server:
        yield server


@pytest.fixture(scope="session")
def embedder_address(embedder_server: GrpcServer) -> str:
    return embedder_server.address


@pytest_asyncio.fixture(loop_scope="session")
async def embedder_stub(embedder_address: str) -> AsyncIterator[embedder_pb2_grpc.EmbedderStub]:
    async with grpc.aio.insecure_channel(embedder_address) as channel:
        yield embedder_pb2_grpc.EmbedderStub(channel)


def vectors(response: embedder_pb2.EmbedResponse) -> np.ndarray:
    return np.stack([np.frombuffer(e.vector, dtype="<f4") for e in response.embeddings])


async def eventually(condition: Callable[[], bool | Awaitable[bool]], within: float = 10.0) -> None:
    """Waits (bounded) until `condition()` holds: for states set by other tasks, threads or
    processes. An async condition (a query to a server) is polled every 10 ms."""
    async with asyncio.timeout(within):
        while True:
            result = condition()
            queries = inspect.isawaitable(result)
            if await result if queries else result:
                return
            await asyncio.sleep(0.01 if queries else 0.001)


async def whole_ring(pool: ShardPool, members: int | None = None) -> None:
    """Waits (bounded) until the router's pool has `members` shards (default: those it
    has) and every one is in the ring. A first health check can miss its 0.3 s on a loaded
    machine (a test's services share one event loop); its shard then joins at the next
    check, and a call before that finds no shard (UNAVAILABLE, seen in CI)."""
    await eventually(
        lambda: (
            (members is None or len(pool.members) == members)
            and all(m.healthy for m in pool.members.values())
        )
    )


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedis]:
    """A private redis-server on a free loopback port, persisting (AOF) so it can restart."""
    server = LocalRedis(free_port(), data_dir=tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def tenant() -> str:
    """A tenant of this test's own: tests share one Redis and stay out of each other's way."""
    return f"t-{uuid.uuid4().hex[:12]}"


def router_config(**overrides: object) -> RouterConfig:
    """A router for an in-process test: port 0, no metrics port, no grace, fast health
    checks; `shards=` or `registry=` says where its shards are."""
    settings: dict[str, object] = {
        "port": 0,
        "metrics_port": -1,
        "grace_seconds": 0,
        "health_interval_seconds": 0.1,
    }
    return RouterConfig(**(settings | overrides))


def shard_config(**overrides: object) -> ShardConfig:
    settings: dict[str, object] = {
        "port": 0,
        "metrics_port": -1,
        "grace_seconds": 0,
        "redis_timeout": 0.5,
        # An in-process shard shares its event loop with the test, whose blocking helpers
        # (starting a process) would read as stalls; tests/test_mesh.py freezes a real one.
        "stall_seconds": 0,
    }
    return ShardConfig(**(settings | overrides))
