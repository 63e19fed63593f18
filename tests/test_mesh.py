"""End to end: `semcache up` as a user runs it (real subprocesses), used through the router
with the SDK, the CLI and grpcurl; a shard killed under load; the mesh restarted on its data."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import httpx
import pytest

from semcache.cli.up import GRPCURL
from semcache.client import Client, SemcacheError
from semcache.dev.mesh import MeshPorts
from semcache.dev.probe import free_port, free_port_run
from semcache.v1 import cache_pb2, cache_pb2_grpc
from tests.conftest import eventually

PARAPHRASES = [
    ("How do I renew my passport?", "How can I renew my passport?"),
    ("What is the boiling point of water?", "What's the boiling point of water?"),
    ("How do I reset my router?", "How can I reset my router?"),
    ("Who painted the Mona Lisa?", "Who painted the Mona Lisa painting?"),
]


class MeshProcess:
    """`python -m semcache.cli up` on free ports, stopped like Ctrl-C would."""

    def __init__(
        self, data_dir: Path, shards: int = 2, environ: dict[str, str] | None = None
    ) -> None:
        self.data_dir = data_dir
        self.shards = shards
        self.environ = os.environ | (environ or {})
        names = ("router", "router-metrics", "http", "embedder", "embedder-metrics", "redis")
        self.ports = {name: free_port() for name in names}
        # Shard ports are consecutive from --shard-port (and metrics ports from theirs).
        self.shard_port = free_port_run(shards)
        self.router = f"127.0.0.1:{self.ports['router']}"
        self.process: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        self.pids: dict[str, int] = {}

    def start(self, timeout: float = 120) -> None:
        argv = [
            sys.executable,
            "-m",
            "semcache.cli",
            "up",
            "--shards",
            str(self.shards),
            "--data-dir",
            str(self.data_dir),
            "--echo-delay-ms",
            "50",
            "--no-build-model",  # make test builds it first; a test never trains one
            "--shard-port",
            str(self.shard_port),
            "--shard-metrics-port",
            str(free_port_run(self.shards)),
        ]
        for name, port in self.ports.items():
            argv += [f"--{name}-port", str(port)]
        self.lines = []
        self.process = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            env=self.environ,
        )
        up = threading.Event()
        threading.Thread(target=self._read, args=(up,), daemon=True).start()
        if not up.wait(timeout):
            self.stop()
            raise TimeoutError("semcache up did not come up:\n" + "\n".join(self.lines))
        shards = next(line for line in self.lines if line.strip().startswith("shards"))
        for i, pid in enumerate(re.findall(r"\(pid (\d+)\)", shards)):
            self.pids[f"shard-{i}"] = int(pid)

    def _read(self, up: threading.Event) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            if "Ctrl-C stops it" in line:
                up.set()

    def wait_for_line(self, pattern: str, timeout: float = 60, start: int = 0) -> str:
        """The first line from `start` on that matches `pattern`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines[start:]:
                if re.search(pattern, line):
                    return line
            time.sleep(0.05)
        raise TimeoutError(f"no line matching {pattern!r} in:\n" + "\n".join(self.lines))

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            self.process.wait(timeout=60)
        assert self.process is None or self.process.returncode == 0, self.lines


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshProcess]:
    # Traced, every span printed as a line (what a user tries first): the mesh's tests run
    # with tracing on, and one reads a trace back.
    mesh = MeshProcess(tmp_path_factory.mktemp("mesh"), environ={"OTEL_TRACES_EXPORTER": "console"})
    mesh.start()
    yield mesh
    mesh.stop()


def test_shard_ports_step_over_the_embedder_and_router() -> None:
    assert MeshPorts().shards(3) == [50052, 50054, 50055]
    assert MeshPorts(shard=7000, embedder=7001, router=7003).shards(3) == [7000, 7002, 7004]


def client(mesh: MeshProcess, **options: object) -> Client:
    return Client(mesh.router, **({"timeout": 30.0} | options))


def test_paraphrase_hits_through_the_router_within_its_scope(mesh, tenant) -> None:
    with client(mesh, tenant=tenant) as cache:
        for prompt, paraphrase in PARAPHRASES:
            first = cache.complete(prompt)
            hit = cache.complete(paraphrase)
            assert not first.hit and hit.hit, (prompt, hit.cache)
            assert hit.cache.entry_id == first.cache.entry_id
            assert hit.cache.shard == first.cache.shard  # same scope, same shard
            assert cache.ring().members and cache.ring(tenant=tenant).owners[0] == hit.cache.shard
            assert not cache.complete(paraphrase, tenant=f"{tenant}-b").hit
            assert not cache.complete(paraphrase, system="Answer in French.").hit


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "semcache.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_cli_ask_miss_then_hit(mesh, tenant) -> None:
    where = ["--address", mesh.router, "--tenant", tenant]
    first = run_cli("ask", "How do I bake sourdough bread?", *where)
    assert first.returncode == 0, first.stderr
    assert first.stderr.startswith("miss") and "sourdough" in first.stdout
    second = run_cli("ask", "How can I bake sourdough bread?", *where)
    assert second.returncode == 0, second.stderr
    assert second.stdout == first.stdout
    as_json = json.loads(run_cli("ask", "How can I bake sourdough bread?", *where, "--json").stdout)
    assert as_json["cache"]["status"] == "hit" and as_json["text"] == first.stdout.strip()
    # The calibrated model's probability, where the served policy has one, is on the line.
    model = r", p [01]\.\d+ >= 0\.\d+" if as_json["cache"]["hit_probability"] else ""
    assert re.match(
        rf"hit \(semantic, similarity 0\.\d+ >= 0\.\d+{model}\)  [\d.]+ ms", second.stderr
    )
    stats = json.loads(run_cli("stats", "--address", mesh.router, "--json").stdout)
    assert len(stats["shards"]) == 2 and stats["total"]["hits"] >= 2


def test_one_ask_prints_spans_of_the_three_services_under_one_trace_id(mesh, tenant) -> None:
    where = ["--address", mesh.router, "--tenant", tenant]
    for prompt in ("Which planet has the most moons?", "What planet has the most moons?"):
        seen = len(mesh.lines)
        assert run_cli("ask", prompt, *where).returncode == 0
        line = mesh.wait_for_line(r'"name": "semcache.v1.SemanticCache/Complete"', start=seen)
        trace_id = json.loads(line)["context"]["trace_id"]

        deadline = time.monotonic() + 10  # the spans of other processes print on their own
        while (found := services_in(mesh.lines[seen:], trace_id)) != {
            "router_svc",
            "cache_svc",
            "embed_svc",
        }:
            assert time.monotonic() < deadline, found
            time.sleep(0.05)


def services_in(lines: list[str], trace_id: str) -> set[str]:
    """The services whose console spans among `lines` belong to the trace."""
    spans = [json.loads(line) for line in lines if trace_id in line and line.startswith("{")]
    return {s["resource"]["attributes"]["service.name"] for s in spans}


def test_cli_says_clearly_when_nothing_listens() -> None:
    nobody = f"127.0.0.1:{free_port()}"
    result = run_cli("ask", "hello", "--address", nobody, "--timeout", "2")
    assert result.returncode == 1
    assert f"nothing answers at {nobody}" in result.stderr and "make run" in result.stderr
    assert "Traceback" not in result.stderr


def grpcurl(*args: str) -> str:
    result = subprocess.run(
        [GRPCURL, "-plaintext", *args], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_grpcurl_lists_describes_and_calls_the_router(mesh, tenant) -> None:
    services = grpcurl(mesh.router, "list").split()
    assert {"semcache.v1.SemanticCache", "semcache.v1.Admin", "grpc.health.v1.Health"} <= set(
        services
    )
    assert "rpc Complete ( .semcache.v1.CompleteRequest )" in grpcurl(
        mesh.router, "describe", "semcache.v1.SemanticCache"
    )
    body = json.dumps({"scope": {"tenant": tenant}, "prompt": "What is grpcurl?"})
    reply = json.loads(grpcurl("-d", body, mesh.router, "semcache.v1.SemanticCache/Complete"))
    assert reply["cache"]["status"] == "CACHE_STATUS_MISS" and "grpcurl" in reply["answer"]["text"]


def test_killing_a_shard_under_load_fails_no_request(mesh, tenant) -> None:
    """kill -9 one shard while requests stream in: every one is answered (the next shard on
    the ring takes over, hydrating from Redis), and every entry written before is found."""
    tenants = [f"{tenant}-{i}" for i in range(12)]
    with client(mesh) as cache:
        written = {
            t: cache.complete(f"What is the tallest mountain in region {t}?", tenant=t)
            for t in tenants
        }
        assert {w.cache.shard for w in written.values()} == {"shard-0", "shard-1"}
        victim = "shard-0"

        def ask(i: int) -> bool:
            t = tenants[i % len(tenants)]
            return cache.complete(f"What's the tallest mountain in region {t}?", tenant=t).hit

        with ThreadPoolExecutor(4) as pool:
            answers = [pool.submit(ask, i) for i in range(40)]
            time.sleep(0.2)  # let the stream get going; the kill lands while calls run
            os.kill(mesh.pids[victim], signal.SIGKILL)
            answers += [pool.submit(ask, i) for i in range(40, 160)]
            hits = [a.result() for a in answers]  # raises if any call failed
        assert len(hits) == 160 and all(hits)

        mesh.wait_for_line(rf"{victim} restarted \(pid \d+\)")
        for t, before in written.items():
            again = cache.lookup(f"What is the tallest mountain in region {t}?", tenant=t)
            assert again.hit and again.cache.entry_id == before.cache.entry_id


def test_restarted_mesh_serves_what_it_stored(tmp_path, tenant) -> None:
    mesh = MeshProcess(tmp_path / "data", shards=2)
    mesh.start()
    try:
        with client(mesh, tenant=tenant) as cache:
            stored = [cache.complete(p) for p, _ in PARAPHRASES]
    finally:
        mesh.stop()
    with (
        pytest.raises(SemcacheError, match="nothing answers"),
        client(mesh, timeout=1.0, tenant=tenant) as cache,
    ):
        cache.lookup(PARAPHRASES[0][0])
    mesh.start()  # same ports, same Redis data directory
    try:
        with client(mesh, tenant=tenant) as cache:
            for (_, paraphrase), before in zip(PARAPHRASES, stored, strict=True):
                again = cache.lookup(paraphrase)
                assert again.hit and again.cache.entry_id == before.cache.entry_id
    finally:
        mesh.stop()


def test_the_openai_front_answers_through_the_mesh(mesh, tenant) -> None:
    """`semcache up` serves the HTTP front: a chat completion misses, then hits."""
    body = {"model": "echo", "messages": [{"role": "user", "content": "Who wrote Hamlet?"}]}
    url = f"http://127.0.0.1:{mesh.ports['http']}/v1/chat/completions"
    statuses = []
    for _ in range(2):
        reply = httpx.post(url, json=body, headers={"X-Tenant-ID": tenant}, timeout=30)
        assert reply.status_code == 200, reply.text
        assert reply.json()["choices"][0]["message"]["content"].endswith("Who wrote Hamlet?")
        statuses.append(reply.headers["x-semcache"])
    assert statuses == ["miss", "hit"]


def test_a_frozen_shard_costs_its_callers_a_failover_not_their_deadline(tmp_path, tenant) -> None:
    """SIGSTOP one shard for 4 s under 4 closed-loop callers with 3 s deadlines (one of them
    streaming): routers eject it (its health checks time out) and send the calls waiting on
    it, and the next ones, to the other shard, so no call fails. Resumed, it rejoins the ring
    and lets go of what it held (the other shard stored entries meanwhile): every stored
    entry is an exact hit afterwards."""
    mesh = MeshProcess(tmp_path / "data", shards=2)
    mesh.start()
    try:
        asyncio.run(_load_with_a_frozen_shard(mesh, tenant))
    finally:
        mesh.stop()


async def _load_with_a_frozen_shard(mesh: MeshProcess, tenant: str) -> None:
    tenants = [f"{tenant}-{i}" for i in range(12)]  # namespaces on both shards
    answered: list[tuple[cache_pb2.CompleteRequest, cache_pb2.CompleteResponse]] = []
    failures: list[str] = []
    mid_stream: list[str] = []
    async with grpc.aio.insecure_channel(mesh.router) as channel:
        cache = cache_pb2_grpc.SemanticCacheStub(channel)
        stop = asyncio.Event()

        async def caller(n: int) -> None:
            for i in itertools.count():
                if stop.is_set():
                    return
                t = tenants[(n + 4 * i) % len(tenants)]
                request = cache_pb2.CompleteRequest(
                    scope=cache_pb2.Scope(tenant=t), prompt=f"Q {n}-{i} from {t}?"
                )
                chunks: list[cache_pb2.CompleteChunk] = []
                try:
                    if n == 0:  # one caller streams: a stream fails over before its start
                        async for chunk in cache.StreamComplete(request, timeout=3.0):
                            chunks.append(chunk)
                        reply = cache_pb2.CompleteResponse(cache=chunks[-1].end.cache)
                    else:
                        reply = await cache.Complete(request, timeout=3.0)
                    answered.append((request, reply))
                except grpc.aio.AioRpcError as e:
                    # A stream the frozen shard had started cannot move (docs/router.md).
                    (mid_stream if chunks else failures).append(f"{e.code().name}")

        callers = [asyncio.create_task(caller(n)) for n in range(4)]
        await asyncio.sleep(0.5)
        victim = mesh.pids["shard-0"]
        os.kill(victim, signal.SIGSTOP)
        try:
            await asyncio.sleep(4.0)
        finally:
            os.kill(victim, signal.SIGCONT)
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.gather(*callers)
        assert failures == [], failures[:5]
        assert len(mid_stream) <= 1  # at most the one running when the shard froze
        assert {reply.cache.shard for _, reply in answered} == {"shard-0", "shard-1"}

        async def victim_back() -> bool:
            ring = await cache_pb2_grpc.AdminStub(channel).Ring(cache_pb2.RingRequest())
            return len(ring.members) == 2 and all(m.healthy for m in ring.members)

        await eventually(victim_back, within=30)
        await asyncio.to_thread(mesh.wait_for_line, "after a stall: dropped what was hydrated")
        stored = [(request, reply) for request, reply in answered if reply.cache.stored]
        assert len(stored) >= 20
        for request, reply in stored:
            again = await cache.Lookup(
                cache_pb2.LookupRequest(scope=request.scope, prompt=request.prompt)
            )
            assert again.cache.status == cache_pb2.CACHE_STATUS_HIT, (reply.cache.shard, request)
