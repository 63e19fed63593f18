"""The `semcache` command line.

    semcache up                          start the local mesh (what `make run` runs)
    semcache ask "How do I reset my password?"        complete: cached answer or the LLM's
    semcache lookup PROMPT | store PROMPT ANSWER | invalidate | stats | ring
    semcache eval --pairs FILE.jsonl     hit quality of a hit policy on labelled pairs

Calls go to `--address` ($SEMCACHE_ADDRESS, default 127.0.0.1:50051) with `--token`
($SEMCACHE_TOKEN) when the router has auth on. Output is for people; `--json` prints one
JSON object for scripts. `ask` and `lookup` print the answer on stdout and what the cache
did on stderr, so `$(semcache ask ...)` captures only the answer.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

from semcache.client import DEFAULT_ADDRESS, CacheInfo, Client, Completion, SemcacheError
from semcache.dev.mesh import LocalMesh, MeshError, MeshPorts, ModelBuild
from semcache.tls import TlsFiles

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


# --- calls against a running mesh ---------------------------------------------------------


def _client(args: argparse.Namespace) -> Client:
    tenant = getattr(args, "tenant", "")  # `stats` takes no scope
    credentials = None
    if args.tls_ca or args.tls_cert or args.tls_key:
        try:
            tls = TlsFiles.read(ca=args.tls_ca, cert=args.tls_cert, key=args.tls_key)
        except ValueError as e:
            sys.exit(f"semcache: {e}")
        credentials = tls.channel_credentials()
    return Client(
        args.address, token=args.token, tenant=tenant, timeout=args.timeout, credentials=credentials
    )


def _scope(args: argparse.Namespace) -> dict[str, Any]:
    scope: dict[str, Any] = {}
    if args.model:
        scope["model"] = args.model
    if args.system:
        scope["system"] = args.system
    return scope


def _emit(args: argparse.Namespace, value: Any, text: str) -> None:
    if args.json:
        print(
            json.dumps(
                dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value,
                ensure_ascii=False,
                indent=2,
            )
        )
    else:
        print(text)


def _describe(cache: CacheInfo) -> str:
    """One line on what the cache did, e.g. `hit (semantic, similarity 0.962 >= 0.900)`."""
    ms = f"{cache.timings.total_ms:.1f} ms"
    p = "" if cache.hit_probability is None else f"p {cache.hit_probability:.2f}"
    if cache.status == "hit":
        model = f", {p} >= {cache.hit_cut:.2f}" if p and cache.hit_cut is not None else ""
        line = (
            f"hit ({cache.kind}, similarity {cache.similarity:.3f} >= {cache.threshold:.3f}"
            f"{model})  {ms}  shard {cache.shard}  entry {cache.entry_id}"
        )
        if cache.matched_prompt:
            line += f"\n  matched: {cache.matched_prompt!r}"
    elif cache.status == "bypass":
        line = f"bypass (lookup skipped)  {ms}  shard {cache.shard}"
    else:
        if cache.guard == "model" and p and cache.hit_cut is not None:
            why = f"best similarity {cache.similarity:.3f}, {p} < {cache.hit_cut:.2f}, "
        elif cache.guard:
            why = f"best similarity {cache.similarity:.3f}, {cache.guard} guard, "
        elif cache.similarity:
            why = f"best similarity {cache.similarity:.3f} < {cache.threshold:.3f}, "
        else:
            why = ""
        line = (
            f"miss ({why}{'stored' if cache.stored else 'not stored'})  {ms}  shard {cache.shard}"
        )
    if cache.degraded:
        line += f"\n  degraded: {', '.join(cache.degraded)}"
    return line


def _answer(args: argparse.Namespace, result: Completion) -> None:
    if args.json:
        _emit(args, result, "")
        return
    print(_describe(result.cache), file=sys.stderr, flush=True)
    if result.text is not None:
        print(result.text)


def ask(args: argparse.Namespace) -> None:
    with _client(args) as client:
        _answer(
            args,
            client.complete(
                args.prompt,
                category=args.category,
                min_similarity=args.min_similarity,
                no_cache=args.no_cache,
                no_store=args.no_store,
                **_scope(args),
            ),
        )


def lookup(args: argparse.Namespace) -> None:
    with _client(args) as client:
        _answer(
            args,
            client.lookup(
                args.prompt,
                category=args.category,
                min_similarity=args.min_similarity,
                **_scope(args),
            ),
        )


def store(args: argparse.Namespace) -> None:
    with _client(args) as client:
        stored = client.store(
            args.prompt, args.answer, ttl=args.ttl, category=args.category, **_scope(args)
        )
    _emit(
        args,
        stored,
        f"stored entry {stored.entry_id} on shard {stored.shard}"
        f"{' (replaced the previous answer)' if stored.replaced else ''}",
    )


def invalidate(args: argparse.Namespace) -> None:
    with _client(args) as client:
        removed = client.invalidate(
            entry_id=args.entry, namespace=args.namespace, tenant_wide=args.all, **_scope(args)
        )
    _emit(args, {"removed": removed}, f"removed {removed} entr{'y' if removed == 1 else 'ies'}")


def stats(args: argparse.Namespace) -> None:
    with _client(args) as client:
        result = client.stats()
    rows = [("shard", "address", "entries", "namespaces", "hits", "misses", "redis", "embedder")]
    for s in (*result.shards, result.total):
        if not s.reachable and s.shard != "total":
            rows.append((s.shard, s.address, "unreachable", "", "", "", "", ""))
            continue
        rows.append(
            (
                s.shard,
                s.address,
                str(s.entries),
                str(s.namespaces),
                str(s.hits),
                str(s.misses),
                s.redis_state,
                s.embedder_state,
            )
        )
    _emit(args, result, _table(rows))


def ring(args: argparse.Namespace) -> None:
    with _client(args) as client:
        scope = _scope(args) | ({"tenant": args.tenant} if args.scoped else {})
        result = client.ring(**scope)
    rows = [("member", "address", "share", "healthy", "in flight")]
    rows += [
        (m.id, m.address, f"{m.share:.1%}", "yes" if m.healthy else "NO", str(m.in_flight))
        for m in result.members
    ]
    text = (
        _table(rows) + f"\n{result.vnodes} virtual nodes per member, bounded load c = "
        f"{result.load_factor:g}"
    )
    if result.namespace:
        text += f"\nnamespace {result.namespace}: owners {' > '.join(result.owners)}"
    _emit(args, result, text)


# --- hit quality ---------------------------------------------------------------------------


def evaluate_quality(args: argparse.Namespace) -> None:
    """`semcache eval`: a hit policy on labelled pairs, with the real embedder (docs/eval.md)."""
    import time  # imported here, like the quality modules: no other command needs them

    from semcache.quality import evaluate
    from semcache.quality.policy import HitPolicy, PolicySet

    if args.limit is not None and args.limit < 1:
        sys.exit(f"semcache: --limit must be >= 1, got {args.limit}")
    try:
        pairs = evaluate.select(evaluate.load_pairs(args.pairs, args.limit), args.split)
    except evaluate.PairsError as e:
        sys.exit(f"semcache: {e}")
    if not pairs:
        sys.exit(f"semcache: {args.pairs}: no pairs in the {args.split} split")
    if args.static is not None:
        if not -1.0 <= args.static <= 1.0:
            sys.exit(f"semcache: --static must be a cosine similarity in [-1, 1]: {args.static}")
        policy, name = HitPolicy.static(args.static), f"static {args.static:g}"
    elif args.policy is not None:
        if not hasattr(HitPolicy, "load"):
            sys.exit("semcache: this version's HitPolicy cannot load policy files")
        try:
            policy, name = HitPolicy.load(args.policy), str(args.policy)
        except (OSError, ValueError, KeyError, TypeError) as e:
            sys.exit(f"semcache: {e}")  # names the file
    else:
        policy, name = None, "default"
    started = time.perf_counter()
    vectors = _vectors(args, evaluate.texts_of(pairs))
    if policy is None:  # what shards use with this embedder's model
        policy = PolicySet.shipped().for_model(vectors.model)
        name = f"default ({policy.name})"
    result = evaluate.report(
        pairs=pairs,
        vectors=vectors,
        policy=policy,
        protocol=args.protocol,
        policy_name=name,
        data=str(args.pairs),
        split=args.split,
        embed_seconds=time.perf_counter() - started,
    )
    print(evaluate.format_table(result))
    if args.examples:
        print(f"\n{args.examples} wrong hits at random (similarity | query || cached):")
        for c in evaluate.wrong_hits(pairs, vectors, policy, args.examples):
            print(f"  {c.similarity:.3f} | {c.query} || {c.cached}")
    if args.json is not None:
        _write_json(args.json, result)
    if args.plot is not None:
        from semcache.quality.plot import PlotError, plot_report

        try:
            plot_report(result, args.plot)
        except PlotError as e:
            sys.exit(f"semcache: {e}")


def _vectors(args: argparse.Namespace, texts: list[str]) -> Any:
    """The texts' vectors from `--embedder`, or a private embedder started for the run."""
    from semcache.quality import embeddings

    if args.embedder is None:
        print(
            "semcache: starting a private embedder (--embedder HOST:PORT uses a running one)",
            file=sys.stderr,
            flush=True,
        )
    try:
        return embeddings.embed_texts_sync(texts, args.embedder, progress=embeddings.ProgressLine())
    except embeddings.EmbeddingError as e:
        sys.exit(f"semcache: {e}")


def _write_json(path: Path, value: Any) -> None:
    try:
        path.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")
    except OSError as e:
        sys.exit(f"semcache: {path}: {e.strerror or e}")


def calibrate_policy(args: argparse.Namespace) -> None:
    """`semcache calibrate`: fit a policy on the fit split, report on the held-out split."""
    import datetime as dt
    import time

    from semcache.quality import calibrate, dataset, evaluate
    from semcache.quality.features import FEATURES
    from semcache.quality.policy import HitPolicy, model_name

    if not 0 < args.target_precision < 1:
        sys.exit(f"semcache: --target-precision must be in (0, 1), got {args.target_precision}")
    if unknown := sorted(set(args.features or ()) - set(FEATURES)):
        known = ", ".join(FEATURES)
        sys.exit(f"semcache: --features: unknown {', '.join(unknown)}; known: {known}")
    try:
        base = HitPolicy.load(args.base) if args.base else HitPolicy()
        if args.floor is not None:
            base = dataclasses.replace(base, thresholds={**base.thresholds, "default": args.floor})
        pairs = evaluate.load_pairs(args.pairs)
    except (evaluate.PairsError, ValueError) as e:
        sys.exit(f"semcache: {e}")
    if pairs[0].split:  # the project's groups: weights on train, the cut on dev
        fit, dev, test = (evaluate.select(pairs, which) for which in ("train", "dev", "test"))
    else:
        (fit, test), dev = evaluate.split(pairs), []
    if not fit or not test:
        sys.exit(f"semcache: {args.pairs}: too few pairs to hold some out ({len(pairs)})")
    started = time.perf_counter()
    vectors = _vectors(args, evaluate.texts_of(pairs))
    embed_seconds = time.perf_counter() - started
    try:
        policy, seen = calibrate.calibrate(
            fit,
            vectors,
            base=base,
            target_precision=args.target_precision,
            by_category=args.by_category,
            cut_pairs=dev or None,
            use=args.features or FEATURES,
        )
    except ValueError as e:
        sys.exit(f"semcache: {e}")
    fitted_for = model_name(vectors.model)
    document = dataclasses.replace(policy, name=args.name, embedder=fitted_for).to_json() | {
        "fitted": {
            "data": str(args.pairs),
            "split": "train, cut on dev" if dev else "fit",
            "split_seed": dataset.SPLIT_SEED if dev else evaluate.SPLIT_SEED,
            "model": vectors.model,
            "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            **{k: v for k, v in seen.items()},
        }
    }
    _write_json(args.out, document)
    print(
        f"fitted on {seen['fitted_on']} candidates from {len(fit)} pairs; "
        f"vetoes: {', '.join(seen['vetoes']) or 'none'}; cut {seen['cut']:.3f}; "
        f"wrote {args.out}\nheld-out report ({len(test)} pairs, never seen by the fit):"
    )
    result = evaluate.report(
        pairs=test,
        vectors=vectors,
        policy=policy,
        protocol="stream",
        policy_name=str(args.out),
        data=str(args.pairs),
        split="test",
        embed_seconds=embed_seconds,
    )
    print(evaluate.format_table(result))
    if args.json is not None:
        _write_json(args.json, result)


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )


# --- the parser ----------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="semcache", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)

    connection = argparse.ArgumentParser(add_help=False)
    connection.add_argument(
        "--address",
        default=os.environ.get("SEMCACHE_ADDRESS", DEFAULT_ADDRESS),
        help="the router (default: $SEMCACHE_ADDRESS or %(default)s)",
    )
    connection.add_argument(
        "--token",
        default=os.environ.get("SEMCACHE_TOKEN"),
        help="API token (default: $SEMCACHE_TOKEN)",
    )
    connection.add_argument("--timeout", type=float, default=10.0, help="seconds")
    for name, what in (
        ("ca", "CA bundle that verifies the router (TLS on)"),
        ("cert", "client certificate, for mutual TLS"),
        ("key", "the client certificate's key"),
    ):
        env = f"SEMCACHE_TLS_{name.upper()}"
        connection.add_argument(
            f"--tls-{name}",
            type=Path,
            default=os.environ.get(env),
            help=f"{what} (PEM; default ${env})",
        )
    connection.add_argument("--json", action="store_true", help="print JSON for scripts")
    scope = argparse.ArgumentParser(add_help=False)
    scope.add_argument(
        "--tenant",
        default=os.environ.get("SEMCACHE_TENANT", ""),
        help="default: $SEMCACHE_TENANT, else the token's (auth on) or 'default'",
    )
    scope.add_argument("--model", default="")
    scope.add_argument("--system", default="", help="the system prompt")
    scope.add_argument("--category", default="", help="hit-policy category")
    read = argparse.ArgumentParser(add_help=False)
    read.add_argument("prompt")
    read.add_argument(
        "--min-similarity",
        type=float,
        default=None,
        help="a stricter cosine similarity bound for this call",
    )
    shared = [connection, scope]

    p = commands.add_parser(
        "ask", parents=[*shared, read], help="the cached answer, or the LLM's on a miss"
    )
    p.add_argument("--no-cache", action="store_true", help="skip the lookup")
    p.add_argument("--no-store", action="store_true", help="do not store the answer")
    p.set_defaults(run=ask)
    p = commands.add_parser("lookup", parents=[*shared, read], help="look up only, no LLM call")
    p.set_defaults(run=lookup)
    p = commands.add_parser("store", parents=shared, help="store an answer for a prompt")
    p.add_argument("prompt")
    p.add_argument("answer")
    p.add_argument("--ttl", type=int, default=None, help="seconds (default: the shard's)")
    p.set_defaults(run=store)
    p = commands.add_parser("invalidate", parents=shared, help="remove cached entries")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--entry", help="one entry, by id")
    target.add_argument(
        "--namespace",
        action="store_true",
        help="every entry of the scope given by --tenant/--model/--system",
    )
    target.add_argument("--all", action="store_true", help="every entry of --tenant")
    p.set_defaults(run=invalidate)
    p = commands.add_parser("stats", parents=[connection], help="per-shard counters")
    p.set_defaults(run=stats)
    p = commands.add_parser("ring", parents=shared, help="ring members; owners of a scope")
    p.add_argument(
        "--scoped",
        action="store_true",
        help="also show the namespace and owners of the scope given",
    )
    p.set_defaults(run=ring)

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

    p = commands.add_parser(
        "eval",
        help="hit quality of a hit policy on labelled pairs (docs/eval.md)",
        description="Evaluates a hit policy on labelled pairs (JSONL: a, b, label 1 = same "
        "meaning, optional kind and category) with the real embedder, against a sweep of "
        "static thresholds. Vectors are cached in ~/.cache/semcache/embeddings.",
    )
    p.add_argument(
        "--pairs",
        type=Path,
        required=True,
        help="labelled pairs, JSONL, or a directory of groups (data/pairs/groups)",
    )
    p.add_argument(
        "--protocol",
        choices=("pairs", "stream"),
        default="pairs",
        help="pairs: each pair alone; stream: every a cached, every b a query against all "
        "of them (default: %(default)s)",
    )
    policy = p.add_mutually_exclusive_group()
    policy.add_argument("--policy", type=Path, help="a policy file (default: the shards' default)")
    policy.add_argument(
        "--static", type=float, metavar="THRESHOLD", help="one static cosine threshold, no guards"
    )
    p.add_argument(
        "--split",
        choices=("all", "test", "dev", "train"),
        default="all",
        help="test: only the held-out pairs a calibrator never sees (20%% of a pairs file; "
        "the test split of the project's groups, which also have train and dev) "
        "(default: %(default)s)",
    )
    p.add_argument("--json", type=Path, metavar="OUT", help="write the report as JSON here")
    p.add_argument("--plot", type=Path, metavar="OUT.png", help="draw the curves (matplotlib)")
    p.add_argument(
        "--embedder",
        metavar="HOST:PORT",
        help="a running embedder (default: start a private one for the run)",
    )
    p.add_argument("--limit", type=int, metavar="N", help="only the first N pairs")
    p.add_argument(
        "--examples",
        type=int,
        default=0,
        metavar="N",
        help="print N wrong hits (stream setting), drawn at random with a fixed seed",
    )
    p.set_defaults(run=evaluate_quality)

    p = commands.add_parser(
        "calibrate",
        help="fit a hit policy on labelled pairs (docs/quality.md)",
        description="Fits the hit model (logistic regression over similarity, margin, guard "
        "signals and lexical features) on the fit split of the pairs (80%%, grouped by a), "
        "picks the guards that pay, writes the policy file the shards load (--policy), and "
        "reports on the held-out 20%% with the stream protocol.",
    )
    p.add_argument(
        "--pairs",
        type=Path,
        required=True,
        help="labelled pairs, JSONL, or a directory of groups (data/pairs/groups)",
    )
    p.add_argument("--out", type=Path, required=True, metavar="POLICY.json")
    p.add_argument("--name", default="calibrated", help="the policy's name in reports")
    p.add_argument(
        "--target-precision",
        type=float,
        default=0.8,
        help="share of hits that must be right, on the fit split (default: %(default)s)",
    )
    p.add_argument(
        "--by-category",
        action="store_true",
        help="a cut per category (code, default, ...) with enough candidates",
    )
    p.add_argument(
        "--features",
        type=lambda text: [name.strip() for name in text.split(",") if name.strip()],
        metavar="NAMES",
        help="comma-separated features the model may weigh (default: all; the others get "
        "weight 0; docs/quality.md lists them)",
    )
    p.add_argument(
        "--floor",
        type=float,
        default=None,
        help="similarity below which nothing hits (default: the base policy's, 0.9)",
    )
    p.add_argument("--base", type=Path, help="a policy file to start from (thresholds, tenants)")
    p.add_argument("--json", type=Path, metavar="OUT", help="write the held-out report here")
    p.add_argument(
        "--embedder",
        metavar="HOST:PORT",
        help="a running embedder (default: start a private one for the run)",
    )
    p.set_defaults(run=calibrate_policy)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        args.run(args)
    except SemcacheError as e:
        hint = " (is the mesh up? `make run` starts it)" if "nothing answers" in str(e) else ""
        sys.exit(f"semcache: {e}{hint}")


if __name__ == "__main__":
    main()
