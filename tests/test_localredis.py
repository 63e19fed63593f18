"""The tests' own Redis: a server that cannot start says why; cluster ports never collide."""

import socket
from pathlib import Path

import pytest

from semcache.dev.localredis import LocalRedis
from semcache.dev.probe import clashes, free_cluster_ports


def test_a_node_whose_bus_port_is_taken_says_why(tmp_path: Path) -> None:
    """Redis logs why it stops to stdout, not stderr: the error carries it."""
    (port,) = free_cluster_ports(1)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port + 10000))
        holder.listen()
        node = LocalRedis(
            port,
            extra_args=("--cluster-enabled", "yes", "--cluster-config-file", f"{tmp_path}/n.conf"),
        )
        with pytest.raises(RuntimeError, match="Address already in use"):
            node.start()


def test_no_cluster_port_is_another_nodes_bus_port() -> None:
    assert clashes(40001, [30001]) and clashes(30001, [40001]) and clashes(30001, [30001])
    assert not clashes(30002, [30001, 40003])
