"""`semcache up`: the whole mesh in local processes (what `make run` runs)."""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

from semcache.dev.mesh import LocalMesh, MeshError, MeshPorts, ModelBuild

#: grpcurl (a dev tool) and this command, beside this interpreter when installed in a venv.
GRPCURL = shutil.which("grpcurl", path=str(Path(sys.executable).parent)) or "grpcurl"
SEMCACHE = shutil.which("semcache", path=str(Path(sys.executable).parent)) or "semcache"
EXAMPLE_PROMPT = "How do I reset my password?"


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def up(args: argparse.Namespace) -> None:
    # SIGTERM stops the mesh like Ctrl-C; SIGINT is set too because a shell starts
    # background jobs with it ignored, which Python would keep.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    ports = MeshPorts(
        router=args.router_port,
        router_metrics=args.router_metrics_port,
        http=args.http_port,
        embedder=args.embedder_port,
        embedder_metrics=args.embedder_metrics_port,
        shard=args.shard_port,
        shard_metrics=args.shard_metrics_port,
        redis=args.redis_port,
    )
    mesh = LocalMesh(
        shards=args.shards,
        ports=ports,
        data_dir=args.data_dir,
        echo_delay_ms=args.echo_delay_ms,
        tokens_file=args.tokens_file,
    )
    if mesh.redis is None:
        print("semcache: no redis-server found: shards run memory-only", flush=True)
    models = ModelBuild.status()
    tuned = models["tuned"]["built"]
    if not tuned and args.build_model:
        mesh.model_build = ModelBuild(Path(models["cache"]) / "build.log")
    try:
        mesh.start()
        if mesh.model_build is not None:
            mesh.model_build.start()
        body = json.dumps({"scope": {"tenant": "demo"}, "prompt": EXAMPLE_PROMPT})
        redis = mesh.redis.url if mesh.redis else "none (memory-only)"
        if mesh.redis and args.data_dir:
            redis += f"   data in {args.data_dir}"
        pids = {c.name: c.process.pid for c in mesh.children if c.process}
        shards = ", ".join(f"{a} (pid {pids[f'shard-{i}']})" for i, a in enumerate(mesh.shards))
        http = (
            f"  openai    http://127.0.0.1:{ports.http}/v1   (base_url for OpenAI SDKs)\n"
            if ports.http >= 0
            else ""
        )
        print(
            "\nsemcache is up\n"
            f"  router    {mesh.router}   (this is where clients connect)\n"
            f"{http}"
            f"  shards    {shards}\n"
            f"  embedder  {mesh.embedder}\n"
            f"  model     {_model_line(models, mesh.model_build)}\n"
            f"  redis     {redis}\n"
            f"  try:      {SEMCACHE} ask '{EXAMPLE_PROMPT}'\n"
            f"            {GRPCURL} -plaintext -d '{body}' {mesh.router} "
            "semcache.v1.SemanticCache/Complete\n"
            "  Ctrl-C stops it.\n",
            flush=True,
        )
        mesh.supervise(lambda line: print(line, flush=True))
    except MeshError as e:
        sys.exit(f"semcache: {e}")
    except KeyboardInterrupt:
        print("\nsemcache: stopping", flush=True)
    finally:
        mesh.stop()


def _model_line(models: dict[str, Any], build: ModelBuild | None) -> str:
    if models["tuned"]["built"]:
        return f"{models['tuned']['model']} (tuned for caching)"
    line = f"{models['stock']['model']} (stock)"
    if build is None:
        return line + "; the tuned model is not built (`make model` builds it)"
    return (
        line + "\n            the tuned model is building in the background (6-13 min "
        f"on 2 cores; log: {build.log});\n            the mesh switches to it when it is "
        "ready, without a restart"
    )


def register(commands: Any, parents: object) -> None:
    p = commands.add_parser("up", help="start the local mesh; Ctrl-C stops it")
    p.add_argument("--shards", type=int, default=2, help="number of cache shards")
    p.add_argument("--router-port", type=int, default=50051)
    p.add_argument("--router-metrics-port", type=int, default=9101)
    p.add_argument(
        "--http-port",
        type=int,
        default=8080,
        help="the OpenAI-compatible HTTP front (POST /v1/chat/completions)",
    )
    p.add_argument("--embedder-port", type=int, default=50053)
    p.add_argument("--embedder-metrics-port", type=int, default=9102)
    p.add_argument(
        "--shard-port",
        type=int,
        default=50052,
        help="first shard's port; the next follow, skipping the embedder's and router's",
    )
    p.add_argument("--shard-metrics-port", type=int, default=9110)
    p.add_argument("--redis-port", type=int, default=6390)
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="keep Redis data here (AOF) across runs; default: in memory only",
    )
    p.add_argument(
        "--echo-delay-ms",
        type=float,
        default=400.0,
        help="the echo LLM's delay, so misses and hits look different",
    )
    p.add_argument(
        "--tokens-file",
        type=Path,
        default=None,
        help="turn on API-token auth at the router: '<token> <tenant>' lines",
    )
    p.add_argument(
        "--no-build-model",
        dest="build_model",
        action="store_false",
        help="do not build the tuned model in the background when it is missing",
    )
    p.set_defaults(run=up)
