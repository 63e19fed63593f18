"""`semcache eval` and `semcache calibrate`: hit quality on labelled pairs, with the real
embedder (docs/eval.md, docs/quality.md). The evaluation modules load only when one of
these runs: no other command needs numpy."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from semcache.cli.common import write_json


def evaluate_quality(args: argparse.Namespace) -> None:
    """`semcache eval`: a hit policy on labelled pairs, with the real embedder (docs/eval.md)."""
    import time  # imported here, like the quality modules: no other command needs them

    from semcache.evaluation import data, metrics, report
    from semcache.quality.policy import HitPolicy, PolicySet

    if args.limit is not None and args.limit < 1:
        sys.exit(f"semcache: --limit must be >= 1, got {args.limit}")
    try:
        pairs = data.select(data.load_pairs(args.pairs, args.limit), args.split)
    except data.PairsError as e:
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
    vectors = _vectors(args, data.texts_of(pairs))
    if policy is None:  # what shards use with this embedder's model
        policy = PolicySet.shipped().for_model(vectors.model)
        name = f"default ({policy.name})"
    result = report.report(
        pairs=pairs,
        vectors=vectors,
        policy=policy,
        protocol=args.protocol,
        policy_name=name,
        data=str(args.pairs),
        split=args.split,
        embed_seconds=time.perf_counter() - started,
    )
    print(report.format_table(result))
    if args.examples:
        print(f"\n{args.examples} wrong hits at random (similarity | query || cached):")
        for c in metrics.wrong_hits(pairs, vectors, policy, args.examples):
            print(f"  {c.similarity:.3f} | {c.query} || {c.cached}")
    if args.json is not None:
        write_json(args.json, result.to_json())
    if args.plot is not None:
        from semcache.evaluation.plot import PlotError, plot_report

        try:
            plot_report(result, args.plot)
        except PlotError as e:
            sys.exit(f"semcache: {e}")


def _vectors(args: argparse.Namespace, texts: list[str]) -> Any:
    """The texts' vectors from `--embedder`, or a private embedder started for the run."""
    from semcache.evaluation import embeddings

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


def calibrate_policy(args: argparse.Namespace) -> None:
    """`semcache calibrate`: fit a policy on the fit split, report on the held-out split."""
    import datetime as dt
    import time

    from semcache.evaluation import calibrate, data, report
    from semcache.quality import dataset
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
        pairs = data.load_pairs(args.pairs)
    except (data.PairsError, ValueError) as e:
        sys.exit(f"semcache: {e}")
    if pairs[0].split:  # the project's groups: weights on train, the cut on dev
        fit, dev, test = (data.select(pairs, which) for which in ("train", "dev", "test"))
    else:
        (fit, test), dev = data.split(pairs), []
    if not fit or not test:
        sys.exit(f"semcache: {args.pairs}: too few pairs to hold some out ({len(pairs)})")
    started = time.perf_counter()
    vectors = _vectors(args, data.texts_of(pairs))
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
            "split_seed": dataset.SPLIT_SEED if dev else data.SPLIT_SEED,
            "model": vectors.model,
            "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            **{k: v for k, v in seen.items()},
        }
    }
    write_json(args.out, document)
    print(
        f"fitted on {seen['fitted_on']} candidates from {len(fit)} pairs; "
        f"vetoes: {', '.join(seen['vetoes']) or 'none'}; cut {seen['cut']:.3f}; "
        f"wrote {args.out}\nheld-out report ({len(test)} pairs, never seen by the fit):"
    )
    result = report.report(
        pairs=test,
        vectors=vectors,
        policy=policy,
        protocol="stream",
        policy_name=str(args.out),
        data=str(args.pairs),
        split="test",
        embed_seconds=embed_seconds,
    )
    print(report.format_table(result))
    if args.json is not None:
        write_json(args.json, result.to_json())


def register(commands: Any, parents: object) -> None:
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
