"""The `semcache` command line.

    semcache up     start the local mesh (what `make run` runs) and stop it on Ctrl-C

Today the mesh is the embedding service; shards and the router join it as they are built.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def _wait_until_serving(address: str, child: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if child.poll() is not None:
                raise SystemExit(f"semcache: {address} exited with code {child.returncode}")
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                time.sleep(0.2)
    raise SystemExit(f"semcache: {address} did not become healthy within {timeout:.0f} s")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def up(args: argparse.Namespace) -> None:
    signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM stops the mesh like Ctrl-C
    address = f"127.0.0.1:{args.embedder_port}"
    child = subprocess.Popen(
        [sys.executable, "-m", "embed_svc", "--port", str(args.embedder_port),
         "--metrics-port", str(args.embedder_metrics_port)],
    )  # fmt: skip
    try:
        _wait_until_serving(address, child, timeout=120)
        print(
            f"\nsemcache is up (embedder only: cache shards and the router are not built yet)\n"
            f"  embedder  {address}   metrics http://127.0.0.1:{args.embedder_metrics_port}/metrics\n"
            f'  try:      grpcurl -plaintext -d \'{{"texts": ["hello world"]}}\' '
            f"{address} semcache.v1.Embedder/Embed\n"
            f"  Ctrl-C stops it.\n",
            flush=True,
        )
        code = child.wait()
        raise SystemExit(f"semcache: the embedder exited with code {code}")
    except KeyboardInterrupt:
        print("\nsemcache: stopping", flush=True)
    finally:
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="semcache", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    up_parser = commands.add_parser("up", help="start the local mesh; Ctrl-C stops it")
    up_parser.add_argument("--embedder-port", type=int, default=50053)
    up_parser.add_argument("--embedder-metrics-port", type=int, default=9102)
    up_parser.set_defaults(run=up)
    args = parser.parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
