"""The model build: the tuned recipe's quality gate refuses a model that does not pay."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from embed_svc.build import recipe

#: The tuned steps with one training step: examples, export, int8 and the gate over the dev
#: split take 3-4 minutes on two AVX2 cores.
BUILD_SECONDS = 900


@pytest.mark.timeout(BUILD_SECONDS + 30)
def test_a_tuned_model_that_fails_its_gate_is_refused_and_nothing_is_kept(tmp_path) -> None:
    """One training step leaves the model about as good as the stock one: the gate must
    refuse it, and the cache must hold no tuned model afterwards (a private cache that
    borrows the built stock model and the build environment, so only the tuned steps run)."""
    stock, env_dir = recipe.STOCK.model_dir(), recipe.build_env_dir()
    assert recipe.is_complete(stock) and (env_dir / ".ready").exists(), "`make model` first"
    cache = tmp_path / "cache"
    (cache / "models").mkdir(parents=True)
    (cache / "build-env").mkdir()
    (cache / "models" / stock.name).symlink_to(stock)
    (cache / "build-env" / env_dir.name).symlink_to(env_dir)
    environment = os.environ | {"SEMCACHE_CACHE_DIR": str(cache)}

    built = subprocess.run(
        [sys.executable, "-m", "embed_svc.build", "--train-steps", "1"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = built.stdout + built.stderr
    assert built.returncode != 0, output
    assert "quality gate failed" in output and "stock model" in output, output
    assert sorted(p.name for p in (cache / "models").iterdir()) == [stock.name]

    status = subprocess.run(
        [sys.executable, "-m", "embed_svc.build", "--status"],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(status.stdout)["tuned"]["built"] is False


def test_a_recipe_file_counts_by_its_code_not_its_layout(tmp_path) -> None:
    """Reformatting or recommenting a recipe file keeps its models; changing its code does not."""
    original = tmp_path / "step.py"
    original.write_text('"""Doc."""\n\ndef f(x):\n    return [x, 1]  # why\n')
    relaid = tmp_path / "relaid.py"
    relaid.write_text(
        '"""Another doc."""\ndef f(x):\n    return [\n        x,\n        1,\n    ]\n'
    )
    changed = tmp_path / "changed.py"
    changed.write_text('"""Doc."""\n\ndef f(x):\n    return [x, 2]  # why\n')
    key = recipe._source_key(original)
    assert recipe._source_key(relaid) == key
    assert recipe._source_key(changed) != key


def _project_imports(path: Path) -> set[Path]:
    """The repository's modules a build file imports: as a package (`from semcache.quality
    import dataset`) or, for the scripts run from their own directory, as a sibling."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            for candidate in (
                recipe.REPO_DIR / (name.replace(".", "/") + ".py"),
                path.parent / (name + ".py"),
            ):
                if candidate.is_file():
                    found.add(candidate.resolve())
    return found


def test_the_tuned_recipe_hashes_every_module_that_shapes_its_model() -> None:
    """A module the training data or the build's scripts come from, left out of the recipe,
    would change the model under an unchanged id (and a cached model would be served)."""
    build = recipe.REPO_DIR / "embed_svc/build"
    todo = [build / name for name in ("examples.py", "train.py", "export.py", "gate.py")]
    seen: set[Path] = set()
    while todo:
        path = todo.pop().resolve()
        if path not in seen:
            seen.add(path)
            todo += _project_imports(path)
    hashed = {(recipe.REPO_DIR / name).resolve() for name in recipe.TUNED.files}
    assert {p.relative_to(recipe.REPO_DIR) for p in seen - hashed} == set()
