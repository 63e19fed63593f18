"""The calibrator: logistic fit, cut choice, and a whole fit on the shipped pairs."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from semcache.evaluation import data
from semcache.evaluation.calibrate import calibrate, choose_cut, fit_logistic, stream_candidates
from semcache.evaluation.embeddings import embed_texts
from semcache.quality import guards
from semcache.quality.policy import HitPolicy
from semcache.runtime.config import ShardConfig

PAIRS = Path(__file__).parent / "data" / "pairs.jsonl"


def test_logistic_fit_finds_the_informative_feature() -> None:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(2000, 3))
    y = (x[:, 1] + 0.3 * rng.normal(size=2000) > 0).astype(float)  # only feature 1 matters
    weights, bias, mean, scale = fit_logistic(x, y)
    assert weights[1] > 2 and abs(weights[0]) < 0.3 and abs(weights[2]) < 0.3
    assert abs(bias) < 0.3 and mean.shape == scale.shape == (3,)


def test_constant_and_unknown_features_stay_inert() -> None:
    x = np.array([[0.1, 0.0, np.nan], [0.9, 0.0, 0.2], [0.2, 0.0, 0.1], [0.8, 0.0, np.nan]] * 10)
    y = np.array([0, 1, 0, 1] * 10, dtype=float)
    weights, _, mean, scale = fit_logistic(x, y)
    assert weights[1] == 0 and scale[1] == 1 and np.isfinite(weights).all()
    assert mean[2] == pytest.approx(0.15)


def test_cut_keeps_precision_at_the_target() -> None:
    p = np.array([0.95, 0.9, 0.8, 0.7, 0.6, 0.5])
    right = np.array([1, 1, 1, 0, 1, 0])
    cut = choose_cut(p, right, 0.8)
    assert cut == 0.6  # hits {.95 .. .6}: 4 right of 5 = 0.8
    assert right[p >= cut].mean() >= 0.8
    assert choose_cut(p, right, 0.99) == 0.8  # only the top three are all right
    assert choose_cut(p, np.zeros(6), 0.5) == 0.999  # nothing reaches it: (almost) never hit


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SEMCACHE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


async def test_calibrating_on_the_shipped_pairs(embedder_address, cache_dir, tmp_path) -> None:
    pairs = data.load_pairs(PAIRS)
    fit, test = data.split(pairs)
    assert {p.a for p in fit}.isdisjoint(p.a for p in test)  # never judged on what it saw
    vectors = await embed_texts(data.texts_of(pairs), embedder_address)
    floor = HitPolicy(thresholds={"default": 0.5})
    policy, seen = calibrate(fit, vectors, base=floor, target_precision=0.8)

    assert policy.model is not None and 0 < policy.model.cut < 1
    assert set(policy.guards) == set(seen["vetoes"]) <= set(guards.GUARDS)
    assert seen["fitted_on"] <= seen["candidates"] == len({p.b for p in fit})
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(policy.to_json()))
    assert HitPolicy.load(path) == policy  # what the shards will load

    # On the fit split, the model's hits are more often right than the floor's.
    candidates = stream_candidates(fit, vectors)

    def precision(p: HitPolicy) -> float:
        hits = [
            c.right
            for c in candidates
            if p.decide(c.query, c.cached, c.similarity, second=c.second).hit
        ]
        return sum(hits) / len(hits)

    assert precision(policy) > precision(floor)


async def test_calibrate_command_writes_a_policy_the_shards_load(
    embedder_address, cache_dir, tmp_path
) -> None:
    out, report = tmp_path / "policy.json", tmp_path / "report.json"
    argv = [
        sys.executable,
        "-m",
        "semcache.cli",
        "calibrate",
        "--pairs",
        str(PAIRS),
        "--floor",
        "0.5",
        "--target-precision",
        "0.8",
        "--out",
        str(out),
        "--json",
        str(report),
        "--embedder",
        embedder_address,
    ]
    done = await asyncio.to_thread(
        subprocess.run, argv, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "held-out report" in done.stdout
    policy = HitPolicy.load(out)
    assert policy.model is not None and policy.name == "calibrated"
    fitted = json.loads(out.read_text())["fitted"]
    assert fitted["split"] == "fit" and fitted["target_precision"] == 0.8
    held_out = json.loads(report.read_text())
    assert held_out["split"] == "test" and held_out["protocol"] == "stream"
    assert ShardConfig(policy=out).policies.policies == (policy,)  # `cache_svc --policy`

    bad = await asyncio.to_thread(
        subprocess.run,
        [*argv[:-2], "--target-precision", "1.5"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 1 and "--target-precision must be in (0, 1)" in bad.stderr


async def test_calibrating_on_the_groups_fits_on_train_and_cuts_on_dev(
    embedder_address, cache_dir, tmp_path
) -> None:
    """The project's groups: weights from the train split, the cut from dev, only the
    features asked for; the report is on the test split, per kind."""
    from embed_svc.build import recipe
    from semcache.quality.policy import model_name

    # Four domains' groups (each with train, dev and test prompts): all 23 mean embedding
    # 23,000 texts, minutes on two cores.
    groups_dir = tmp_path / "groups"
    groups_dir.mkdir()
    for path in sorted(recipe.GROUPS_DIR.glob("*.jsonl"))[:4]:
        shutil.copy(path, groups_dir)
    out, report = tmp_path / "policy.json", tmp_path / "report.json"
    argv = [
        sys.executable,
        "-m",
        "semcache.cli",
        "calibrate",
        "--pairs",
        str(groups_dir),
        "--floor",
        "0.7",
        "--target-precision",
        "0.85",
        "--features",
        "similarity,margin,guard_number,guard_negation",
        "--out",
        str(out),
        "--json",
        str(report),
        "--embedder",
        embedder_address,
    ]
    done = await asyncio.to_thread(
        subprocess.run, argv, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    written = json.loads(out.read_text())
    fitted = written["fitted"]
    assert fitted["split"] == "train, cut on dev" and fitted["split_seed"] == "semcache-groups-v1"
    weighed = {name for name, weight in fitted["weights"].items() if weight != 0}
    assert weighed <= {"similarity", "margin", "guard_number", "guard_negation"}
    assert "similarity" in weighed
    assert written["embedder"] == model_name(fitted["model"])  # shards match it by model
    held_out = json.loads(report.read_text())
    assert held_out["split"] == "test" and "by_kind" in held_out["policy"]
    groups = data.load_pairs(groups_dir)
    assert held_out["queries"] == len(data.select(groups, "test"))

    bad = await asyncio.to_thread(
        subprocess.run,
        [*argv[:-2], "--features", "similarity,shoe_size"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 1 and "shoe_size" in bad.stderr
