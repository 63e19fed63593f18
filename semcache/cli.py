"""The `semcache` command line.

    semcache up     start the local mesh (what `make run` runs) and stop it on Ctrl-C

Today the mesh is the embedding service; shards and the router join it as they are built.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from semcache.probe import wait_until_serving

#: grpcurl from the dev tools, beside this interpreter when installed in the venv.
GRPCURL = shutil.which("grpcurl", path=str(Path(sys.executable).parent)) or "grpcurl"


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
        try:
            wait_until_serving(address, timeout=120, process=child)
        except (RuntimeError, TimeoutError) as e:
            raise SystemExit(f"semcache: {e}") from None
        print(
            f"\nsemcache is up (embedder only: cache shards and the router are not built yet)\n"
            f"  embedder  {address}   metrics http://127.0.0.1:{args.embedder_metrics_port}/metrics\n"
            f"  try:      {GRPCURL} -plaintext"
            f' -d \'{{"texts": ["hello world"]}}\' '
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
