"""The `semcache` command line.

    semcache up     start the local mesh (what `make run` runs) and stop it on Ctrl-C

The local mesh: a private Redis, the embedding service, N cache shards and the router.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from semcache.localredis import LocalRedis, find_redis_server
from semcache.probe import wait_until_serving

#: grpcurl from the dev tools, beside this interpreter when installed in the venv.
GRPCURL = shutil.which("grpcurl", path=str(Path(sys.executable).parent)) or "grpcurl"


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _start(name: str, argv: list[str], address: str) -> subprocess.Popen[bytes]:
    child = subprocess.Popen([sys.executable, *argv])
    try:
        wait_until_serving(address, timeout=120, process=child)
    except (RuntimeError, TimeoutError) as e:
        child.kill()
        raise SystemExit(f"semcache: {name}: {e}") from None
    return child


def _stop(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()


def _shard_ports(args: argparse.Namespace) -> list[int]:
    """Shard i on `--shard-port` + i, stepping over the embedder's and router's ports
    (the defaults put shard-0 on 50052 and the embedder on 50053: shard-1 gets 50054)."""
    taken, ports, port = {args.embedder_port, args.router_port}, [], args.shard_port
    while len(ports) < args.shards:
        if port not in taken:
            ports.append(port)
        port += 1
    return ports


def up(args: argparse.Namespace) -> None:
    signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM stops the mesh like Ctrl-C
    redis: LocalRedis | None = None
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    embedder = f"127.0.0.1:{args.embedder_port}"
    router = f"127.0.0.1:{args.router_port}"
    shards = [f"127.0.0.1:{port}" for port in _shard_ports(args)]
    try:
        if find_redis_server() is not None:
            redis = LocalRedis(args.redis_port, args.data_dir)
            redis.start()
        else:
            print("semcache: no redis-server found: the shard runs memory-only", flush=True)
        children.append(
            (
                "embedder",
                _start(
                    "embedder",
                    [
                        "-m",
                        "embed_svc",
                        "--port",
                        str(args.embedder_port),
                        "--metrics-port",
                        str(args.embedder_metrics_port),
                    ],
                    embedder,
                ),
            )
        )
        for i, address in enumerate(shards):
            shard_argv = ["-m", "cache_svc", "--port", address.rsplit(":", 1)[1],
                          "--embedder", embedder, "--shard-id", f"shard-{i}",
                          "--metrics-port", str(args.shard_metrics_port + i),
                          "--echo-delay-ms", str(args.echo_delay_ms)]  # fmt: skip
            if redis is not None:
                shard_argv += ["--redis", redis.url]
            children.append((f"shard-{i}", _start(f"shard-{i}", shard_argv, address)))
        children.append(
            (
                "router",
                _start(
                    "router",
                    [
                        "-m",
                        "router_svc",
                        "--port",
                        str(args.router_port),
                        "--shards",
                        ",".join(shards),
                        "--metrics-port",
                        str(args.router_metrics_port),
                    ],
                    router,
                ),
            )
        )
        body = json.dumps({"scope": {"tenant": "demo"}, "prompt": "How do I reset my password?"})
        print(
            "\nsemcache is up\n"
            f"  router    {router}   (this is where clients connect)\n"
            f"  shards    {', '.join(shards)}\n"
            f"  embedder  {embedder}   metrics http://127.0.0.1:{args.embedder_metrics_port}"
            "/metrics\n"
            f"  redis     {redis.url if redis else 'none (memory-only)'}"
            f"{'  data in ' + str(args.data_dir) if redis and args.data_dir else ''}\n"
            f"  try:      {GRPCURL} -plaintext -d '{body}' {router} "
            "semcache.v1.SemanticCache/Complete\n"
            "  Ctrl-C stops it.\n",
            flush=True,
        )
        while True:  # report a child that dies
            for name, child in children:
                if child.poll() is not None:
                    raise SystemExit(f"semcache: {name} exited with code {child.returncode}")
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\nsemcache: stopping", flush=True)
    finally:
        for _, child in reversed(children):
            _stop(child)
        if redis is not None:
            redis.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="semcache", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    up_parser = commands.add_parser("up", help="start the local mesh; Ctrl-C stops it")
    up_parser.add_argument("--embedder-port", type=int, default=50053)
    up_parser.add_argument("--embedder-metrics-port", type=int, default=9102)
    up_parser.add_argument("--router-port", type=int, default=50051)
    up_parser.add_argument("--router-metrics-port", type=int, default=9101)
    up_parser.add_argument("--shards", type=int, default=2, help="number of cache shards")
    up_parser.add_argument(
        "--shard-port",
        type=int,
        default=50052,
        help="first shard's port; the next ones follow, skipping the embedder's and router's",
    )
    up_parser.add_argument("--shard-metrics-port", type=int, default=9110)
    up_parser.add_argument("--redis-port", type=int, default=6390)
    up_parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="keep Redis data here (AOF) across runs; default: in memory",
    )
    up_parser.add_argument(
        "--echo-delay-ms",
        type=float,
        default=400.0,
        help="the echo LLM's delay, so misses and hits look different",
    )
    up_parser.set_defaults(run=up)
    args = parser.parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
