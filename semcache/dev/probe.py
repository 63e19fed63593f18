"""Blocking helpers for supervising processes: free ports and health probes."""

from __future__ import annotations

import socket
import subprocess
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def free_port() -> int:
    """A loopback port that was free a moment ago (for servers started in subprocesses)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_run(count: int) -> int:
    """The first of `count` consecutive loopback ports that were all free a moment ago (for
    `semcache up`, which numbers its shards' ports from one base)."""
    while True:
        base = free_port()
        if base + count <= 65536 and all(_bindable(base + i) for i in range(1, count)):
            return base


def free_cluster_ports(count: int) -> list[int]:
    """`count` loopback ports for Redis Cluster nodes: each free a moment ago, and so is
    its cluster bus port (the port + 10000, hence below 55536); no node's port is another's
    bus port."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port < 55536 and not clashes(port, ports) and _bindable(port + 10000):
            ports.append(port)
    return ports


def clashes(port: int, nodes: list[int]) -> bool:
    """Whether a cluster node on `port` would share a port, or a bus port (+ 10000), with
    the nodes on `nodes`."""
    return any(port in (node, node + 10000, node - 10000) for node in nodes)


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_until_serving(
    address: str, timeout: float = 60.0, process: subprocess.Popen | None = None
) -> None:
    """Polls `grpc.health.v1` at `address` until SERVING.

    Raises TimeoutError after `timeout` seconds, or RuntimeError as soon as `process` (the
    server being waited for, when given) has exited.
    """
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"{address}: the server exited with code {process.returncode}")
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{address} not SERVING after {timeout:.0f} s")
            time.sleep(0.1)
