"""Would keeping only part of the fine-tuning pay? (`python -m bench wise`)

WiSE-FT (Wortsman et al., "Robust fine-tuning of zero-shot models", CVPR 2022): weights
moved back along the line from the fine-tuned ones to the pretrained ones,

    base + alpha * (tuned - base)

keep much of what fine-tuning gained on its own kind of data and win back some of what it
lost on other data: here, human-written pairs unlike the project's prompts. The tuned
recipe's training (`embed_svc/build/train.py` on the examples `embed_svc/build/examples.py`
makes, its seed) runs once for each of EPOCHS (cached by its inputs under
`~/.cache/semcache/bench/wise`); each result is mixed at each of its ALPHAS in the build
environment (`bench/wise_mix.py`), exported to int8 ONNX as the build exports, served by a
private embedder and measured:

- the cosine alone: traps served on the project's splits and another writer's pairs at
  the threshold that keeps RECALLS of their paraphrases, MRPC's false pairs likewise, and
  Quora as a cache: wrong hits per request at recalls QQP_RECALLS;
- the policy refitted as shipped and its cut swept (`bench/refit.py`), the fitted point
  set against the control's curve (one epoch, alpha 1: the shipped recipe) at equal kept
  or recall.

Writes bench/results/wise.json. About 25 minutes of training and 4 per variant on two
AVX2 cores.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from bench import refit
from bench.embed import machine
from embed_svc.build import examples, recipe
from embed_svc.build.__main__ import ensure_build_env, package_weights
from semcache.evaluation import data, embeddings

RESULTS = refit.ROOT / "bench" / "results"
#: Epochs of training, each with the alphas it is mixed at (1: as trained).
ALPHAS = {1.0: (1.0, 0.9, 0.8, 0.7, 0.5), 2.0: (1.0, 0.7, 0.5)}
#: The shipped recipe, which the others are set against.
CONTROL = (1.0, 1.0)
#: Shares of paraphrases kept at which the cosine alone is read.
RECALLS = (0.5, 0.65, 0.8)
#: Recalls at which Quora's wrong hits are read (the cosine alone, as a cache).
QQP_RECALLS = (0.35, 0.4, 0.5)
#: Finer cuts than `refit.CUTS` where the policies' points lie.
CUTS = (*refit.CUTS, *np.round(np.arange(0.70, 0.95, 0.02), 2))


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "big") + part)
    return h.hexdigest()[:16]


def _run(*argv: object) -> None:
    args = [str(a) for a in argv]
    print("+", " ".join(args), file=sys.stderr, flush=True)
    subprocess.run(args, check=True)


def _written_once(out: Path, *argv: object) -> Path:
    """Runs `argv` with `--out` a scratch directory that becomes `out` when the run has
    ended well, unless `out` is there already (a run stopped halfway is not taken for
    done)."""
    if not out.exists():
        partial = out.with_name(f"{out.name}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        _run(*argv, "--out", partial)
        partial.rename(out)
    return out


def trained(python: Path, work: Path, epochs: float) -> Path:
    """The tuned recipe's weights after `epochs`, trained once per inputs."""
    script = recipe.RECIPE_DIR / "train.py"
    example_file = work / "examples.jsonl"
    key = _digest(
        example_file.read_bytes(),
        script.read_bytes(),
        recipe.WEIGHTS_PACKAGE.encode(),
        f"{epochs} {examples.SEED}".encode(),
    )
    return _written_once(
        recipe.cache_root() / "bench" / "wise" / f"trained-{key}",
        python,
        script,
        "--examples",
        example_file,
        "--weights",
        package_weights(python),
        "--seed",
        examples.SEED,
        "--epochs",
        epochs,
    )


def exported(python: Path, tuned: Path, alpha: float) -> Path:
    """`tuned` mixed at `alpha` and exported to int8 ONNX, once per inputs."""
    key = f"{tuned.name.removeprefix('trained-')}-a{alpha}"
    cache = recipe.cache_root() / "bench" / "wise"
    weights = tuned
    if alpha != 1.0:
        weights = _written_once(
            cache / f"weights-{key}",
            python,
            Path(__file__).with_name("wise_mix.py"),
            "--base",
            package_weights(python),
            "--tuned",
            tuned,
            "--alpha",
            alpha,
        )
    return _written_once(
        cache / f"model-{key}",
        python,
        recipe.RECIPE_DIR / "export.py",
        "--weights",
        weights,
        "--model-id",
        f"all-MiniLM-L6-v2-wise-int8-{key}",
        "--recipe-hash",
        key,
    )


def cosine_alone(sets: refit.Sets, vectors: data.Vectors) -> dict[str, dict[str, float]]:
    """Label-0 pairs passing the threshold that keeps each of RECALLS of the label-1 ones
    (each pair alone), and Quora's wrong hits per request at QQP_RECALLS (as a cache)."""
    found: dict[str, dict[str, float]] = {}
    for name in ("dev", "test", "writer", "mrpc"):
        pairs = getattr(sets, name)
        u, v = vectors.of([p.a for p in pairs]), vectors.of([p.b for p in pairs])
        cosine = np.einsum("ij,ij->i", u, v)
        label = np.array([p.label == 1 for p in pairs])
        found[name] = {
            f"served at {r:.0%} kept": refit.served_at_kept(cosine, label, r) for r in RECALLS
        }
    candidates = refit.candidates(sets.qqp, vectors)
    answerable = len({p.b for p in sets.qqp if p.label == 1})
    curve = []
    for threshold in np.arange(0.6, 1.0, 0.005):
        hits = [c for c in candidates if c.similarity >= threshold]
        right = sum(c.right for c in hits)
        curve.append((right / answerable, 100 * (len(hits) - right) / len(candidates)))
    curve.sort()
    found["qqp"] = {
        f"wrong at recall {r}": round(
            float(np.interp(r, [x for x, _ in curve], [y for _, y in curve])), 2
        )
        for r in QQP_RECALLS
    }
    return found


def measured(sets: refit.Sets, model: Path, label: str) -> dict[str, Any]:
    with embeddings.private_embedder(model_dir=model) as address:
        vectors = embeddings.embed_texts_sync(
            sets.texts(), address, progress=embeddings.ProgressLine(30)
        )
    return {
        "model": vectors.model,
        "alone": cosine_alone(sets, vectors),
        **refit.refitted(sets, vectors, cuts=CUTS, label=label),
    }


def main() -> None:
    python = ensure_build_env()
    sets = refit.Sets.load()
    work = recipe.cache_root() / "bench" / "wise" / "examples"
    work.mkdir(parents=True, exist_ok=True)
    examples.prepare(work)
    results: dict[str, dict[str, Any]] = {}
    for epochs, alphas in ALPHAS.items():
        tuned = trained(python, work, epochs)
        for alpha in alphas:
            name = f"{epochs:g} epochs, alpha {alpha:g}"
            results[name] = measured(sets, exported(python, tuned, alpha), name)
    control = results[f"{CONTROL[0]:g} epochs, alpha {CONTROL[1]:g}"]
    for name, found in results.items():
        found["versus_shipped"] = refit.versus(found["points"][0], control["points"], "shipped")
        print(f"{name}: cosine alone {found['alone']}")
        print(f"{name}: fitted, against the shipped recipe: {found['versus_shipped']}")
    RESULTS.mkdir(exist_ok=True)
    out = {"machine": machine(), "variants": results}
    (RESULTS / "wise.json").write_text(json.dumps(out, indent=1) + "\n")
