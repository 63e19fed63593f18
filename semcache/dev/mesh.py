"""The local mesh behind `semcache up`: a private Redis, the embedder, N shards, the router.

Each service runs as a child process (`python -m <service>`), started in dependency order
and waited for until its health service says SERVING. Shards register in Redis and the
router follows the registry; without a redis-server the shards run memory-only and the
router gets a static list. A child that dies is reported and restarted (at most
`MAX_RESTARTS` times a minute, then the mesh stops: a crash loop needs a human).

On a fresh checkout only the stock model is built (minutes); the tuned one takes longer.
The mesh serves at once with the stock model while `ModelBuild` builds the tuned one in
the background; the embedder switches to it when it is ready, without a restart, and the
shards move what they store to it.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from semcache.dev.localredis import LocalRedis, find_redis_server
from semcache.dev.probe import wait_until_serving

MAX_RESTARTS = 5
RESTART_WINDOW = 60.0


@dataclass(frozen=True, kw_only=True)
class MeshPorts:
    router: int = 50051
    router_metrics: int = 9101
    #: The router's OpenAI-compatible HTTP front.
    http: int = 8080
    embedder: int = 50053
    embedder_metrics: int = 9102
    #: The first shard's; the next ones follow, stepping over the embedder's and router's.
    shard: int = 50052
    shard_metrics: int = 9110
    redis: int = 6390

    def shards(self, count: int) -> list[int]:
        """Shard i on `shard` + i, skipping taken ports (shard-0 50052, embedder 50053,
        shard-1 50054 with the defaults)."""
        taken, port = {self.embedder, self.router}, self.shard
        ports: list[int] = []
        while len(ports) < count:
            if port not in taken:
                ports.append(port)
            port += 1
        return ports


@dataclass
class Child:
    name: str
    argv: list[str]
    address: str
    process: subprocess.Popen[bytes] | None = None
    restarts: deque[float] = field(default_factory=deque)

    def start(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", *self.argv])

    def wait_until_serving(self, timeout: float = 120) -> None:
        assert self.process is not None
        wait_until_serving(self.address, timeout=timeout, process=self.process)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class MeshError(RuntimeError):
    pass


@dataclass
class ModelBuild:
    """`python -m embed_svc.build` in the background, its output in `log`."""

    log: Path
    process: subprocess.Popen[bytes] | None = None

    @staticmethod
    def status() -> dict[str, Any]:
        """Which models are built (`python -m embed_svc.build --status`)."""
        out = subprocess.run(
            [sys.executable, "-m", "embed_svc.build", "--status"],
            capture_output=True,
            text=True,
            check=True,
        )
        status: dict[str, Any] = json.loads(out.stdout)
        return status

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "embed_svc.build"], stdout=log, stderr=subprocess.STDOUT
            )

    def finished(self) -> int | None:
        """The build's exit code once it has ended (reported once), else None."""
        if self.process is None or (code := self.process.poll()) is None:
            return None
        self.process = None
        return code

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait()


def _free(port: int) -> bool:
    with socket.socket() as s:
        # As servers bind: connections of a stopped process lingering in TIME_WAIT do not
        # make the port taken, a listener does.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class LocalMesh:
    def __init__(
        self,
        *,
        shards: int = 2,
        ports: MeshPorts = MeshPorts(),
        data_dir: Path | None = None,
        echo_delay_ms: float = 400.0,
        tokens_file: Path | None = None,
        model_build: ModelBuild | None = None,
    ) -> None:
        self.ports = ports
        self.model_build = model_build
        self.data_dir = data_dir
        self.tokens_file = tokens_file
        self.redis = LocalRedis(ports.redis, data_dir) if find_redis_server() else None
        self.embedder = f"127.0.0.1:{ports.embedder}"
        self.router = f"127.0.0.1:{ports.router}"
        self.shards = [f"127.0.0.1:{port}" for port in ports.shards(shards)]
        self.children = [self._embedder_child()]
        self.children += [self._shard_child(i, a, echo_delay_ms) for i, a in enumerate(self.shards)]
        self.children.append(self._router_child())

    def _embedder_child(self) -> Child:
        return Child(
            "embedder",
            [
                "embed_svc",
                "--port",
                str(self.ports.embedder),
                "--metrics-port",
                str(self.ports.embedder_metrics),
            ],
            self.embedder,
        )

    def _shard_child(self, i: int, address: str, echo_delay_ms: float) -> Child:
        argv = [
            "cache_svc",
            "--port",
            address.rsplit(":", 1)[1],
            "--shard-id",
            f"shard-{i}",
            "--embedder",
            self.embedder,
            "--metrics-port",
            str(self.ports.shard_metrics + i),
            "--echo-delay-ms",
            str(echo_delay_ms),
        ]
        if self.redis is not None:
            argv += ["--redis", self.redis.url, "--registry", self.redis.url]
        return Child(f"shard-{i}", argv, address)

    def _router_child(self) -> Child:
        argv = [
            "router_svc",
            "--port",
            str(self.ports.router),
            "--metrics-port",
            str(self.ports.router_metrics),
            "--http-port",
            str(self.ports.http),
        ]
        if self.redis is not None:
            argv += ["--registry", self.redis.url]
        else:
            argv += ["--shards", ",".join(self.shards)]
        if self.tokens_file is not None:
            argv += ["--tokens-file", str(self.tokens_file)]
        return Child("router", argv, self.router)

    def ports_in_use(self) -> list[str]:
        """The ports this mesh needs that something else already listens on."""
        wanted = {
            "router": self.ports.router,
            "router metrics": self.ports.router_metrics,
            "embedder": self.ports.embedder,
            "embedder metrics": self.ports.embedder_metrics,
        }
        for i, address in enumerate(self.shards):
            wanted[f"shard-{i}"] = int(address.rsplit(":", 1)[1])
            wanted[f"shard-{i} metrics"] = self.ports.shard_metrics + i
        if self.redis is not None:
            wanted["redis"] = self.ports.redis
        if self.ports.http >= 0:  # -1: no HTTP front
            wanted["router http"] = self.ports.http
        return [f"{port} ({name})" for name, port in wanted.items() if not _free(port)]

    def start(self) -> None:
        """Starts everything in order; MeshError (after stopping what started) on failure."""
        if taken := self.ports_in_use():
            raise MeshError(
                f"in use: {', '.join(taken)}; is another mesh running? "
                "Other ports: see `semcache up --help`"
            )
        try:
            if self.redis is not None:
                self.redis.start()
            for child in self.children:
                child.start()
                child.wait_until_serving()
        except (RuntimeError, TimeoutError, OSError) as e:
            self.stop()
            raise MeshError(str(e)) from e

    def supervise(self, report: Callable[[str], None] = print) -> None:
        """Restarts children that die, until interrupted; MeshError on a crash loop. Says
        when the background model build ends."""
        while True:
            if self.model_build is not None and (code := self.model_build.finished()) is not None:
                if code == 0:
                    report(
                        "semcache: the tuned model is built; the embedder switches to it "
                        "within seconds and shards re-embed what they store in the "
                        "background (`semcache stats` shows the progress)"
                    )
                else:
                    report(
                        f"semcache: the tuned model's build failed (exit {code}; see "
                        f"{self.model_build.log}); still serving the stock model"
                    )
            for child in self.children:
                assert child.process is not None
                if child.process.poll() is None:
                    continue
                now = time.monotonic()
                while child.restarts and child.restarts[0] < now - RESTART_WINDOW:
                    child.restarts.popleft()
                if len(child.restarts) >= MAX_RESTARTS:
                    raise MeshError(
                        f"{child.name} keeps exiting "
                        f"({MAX_RESTARTS} restarts in {RESTART_WINDOW:.0f} s)"
                    )
                child.restarts.append(now)
                report(
                    f"semcache: {child.name} exited with code {child.process.returncode}; "
                    "restarting"
                )
                child.start()
                report(f"semcache: {child.name} restarted (pid {child.process.pid})")
            redis = self.redis
            if redis is not None and redis.process is not None and redis.process.poll() is not None:
                report("semcache: redis-server exited; restarting")
                redis.start()
            time.sleep(0.2)

    def stop(self) -> None:
        if self.model_build is not None:
            self.model_build.stop()
        for child in reversed(self.children):
            child.stop()
        if self.redis is not None:
            self.redis.stop()
