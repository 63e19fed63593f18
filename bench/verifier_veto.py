"""Would the verifier pay as a veto on the shipped policy? (`python -m bench verifier_veto`)

`bench verifier` set a cross-encoder verifier against the cosine alone, in rules with a
cosine floor of their own, and found it worse than the cosine on Quora and MRPC; those rules
let pairs the policy would never serve through wherever the verifier was not asked, so the
verifier's own judgement was not isolated. Here it can only take hits back from the policy
as it ships (refitted on these vectors exactly as shipped: `bench/refit.py`): a hit whose
verifier probability is below V becomes a miss. The verifier is the one `bench verifier`
trains (its cache is shared). V is chosen on the dev split, which neither the verifier nor
the policy's weights were fitted on, by the calibrator's rule for guards: the largest V in
VETO_LEVELS whose vetoed hits are right less often than the policy's marginal hit (whose
chance of being right is the cut), so that vetoing beats raising the cut.

The vetoed policy's fitted point is set against the plain policy's swept curve at equal
kept (equal recall on QQP, as a cache): `versus_policy`. Writes
bench/results/verifier_veto.json (verifier_veto-N-layers.json for another size).

    SEMCACHE_BENCH_EMBEDDER=HOST:PORT   a running embedder of the tuned model (default: a
                                        private one)
    SEMCACHE_BENCH_VERIFIER_LAYERS=3    transformer layers of the verifier (as `bench verifier`)
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench import refit, verifier
from bench.embed import machine
from embed_svc.build.__main__ import ensure_build_env
from semcache.evaluation import data, embeddings

RESULTS = refit.ROOT / "bench" / "results"
#: The verifier probabilities below which a veto is tried on the dev split.
VETO_LEVELS = tuple(np.round(np.arange(0.05, 0.95, 0.05), 2))
#: Levels measured on every held-out set too, whichever the dev split chooses: what a
#: veto only at high confidence would do.
SHOWN_LEVELS = (0.1, 0.2, 0.5)
#: The plain policy's cuts, finer where fitted points lie.
CUTS = (*refit.CUTS, *np.round(np.arange(0.70, 0.95, 0.02), 2))


def probabilities(
    pairs_of: Mapping[str, Sequence[tuple[str, str]]], python: Path, model: Path
) -> dict[str, np.ndarray]:
    """The verifier's probability per (cached, query) pair of each set, in one scoring run."""
    rows = [{"a": a, "b": b} for pairs in pairs_of.values() for a, b in pairs]
    scores = verifier.verifier_scores(python, model, rows)
    found, start = {}, 0
    for name, pairs in pairs_of.items():
        found[name] = scores[start : start + len(pairs)]
        start += len(pairs)
    return found


def chosen_level(hit: np.ndarray, right: np.ndarray, p: np.ndarray, cut: float) -> dict:
    """Per level on the dev split: hits vetoed and how often they were right; the chosen
    level (None: no veto pays)."""
    tried, chosen = [], None
    for level in VETO_LEVELS:
        vetoed = hit & (p < level)
        precision = float(right[vetoed].mean()) if vetoed.any() else None
        tried.append({"level": float(level), "vetoed": int(vetoed.sum()), "right": precision})
        if precision is not None and precision < cut:
            chosen = float(level)
    return {"tried": tried, "chosen": chosen}


def main() -> None:
    sets = refit.Sets.load()
    vectors = embeddings.embed_texts_sync(
        sets.texts(), os.environ.get("SEMCACHE_BENCH_EMBEDDER"), progress=embeddings.ProgressLine()
    )
    policy, seen = refit.fitted(sets, vectors)
    qqp_found = refit.candidates(sets.qqp, vectors)
    pairs: dict[str, Sequence[data.Pair]] = {
        "dev": sets.dev,
        "test": sets.test,
        "writer": sets.writer,
        "mrpc": sets.mrpc,
    }
    python = ensure_build_env()
    model = verifier.trained_verifier(python, verifier.training_pairs())
    p = probabilities(
        {
            **{name: [(x.a, x.b) for x in found] for name, found in pairs.items()},
            "qqp": [(c.cached, c.query) for c in qqp_found],
        },
        python,
        model,
    )
    at_cut = refit.with_cut(policy, seen["cut"])
    dev_hit = refit.pair_hits(sets.dev, vectors, refit.unchanged, at_cut)
    dev_right = np.array([x.label == 1 for x in sets.dev])
    choice = chosen_level(dev_hit, dev_right, p["dev"], seen["cut"])
    print(f"dev split, hits at the fitted cut {seen['cut']:.3f} vetoed per level: {choice}")

    plain = refit.points(
        sets, vectors, policy, [seen["cut"], *CUTS], qqp_found=qqp_found, label="policy"
    )
    results: dict[str, Any] = {
        "machine": machine(),
        "model": vectors.model,
        "verifier_layers": verifier.LAYERS,
        "fitted_cut": seen["cut"],
        "dev": choice,
        "policy": plain,
    }

    def vetoes(level: float) -> dict[str, np.ndarray]:
        return {name: p[name] < level for name in ("test", "writer", "mrpc", "qqp")}

    results["levels"] = {}
    for level in SHOWN_LEVELS:
        point = refit.points(
            sets, vectors, policy, [seen["cut"]], qqp_found=qqp_found, vetoes=vetoes(level)
        )[0]
        results["levels"][level] = refit.versus(point, plain, "policy")
        print(f"vetoed below {level}, against the policy: {results['levels'][level]}")
    if choice["chosen"] is not None:
        vetoed = refit.points(
            sets,
            vectors,
            policy,
            [seen["cut"], *CUTS],
            qqp_found=qqp_found,
            vetoes=vetoes(choice["chosen"]),
            label="vetoed",
        )
        comparison = refit.versus(vetoed[0], plain, "policy")
        print(f"vetoed at {choice['chosen']}, at the fitted cut, against the policy: {comparison}")
        # What it costs: one verifier call per hit the policy would make.
        verified = {
            "test": float(refit.pair_hits(sets.test, vectors, refit.unchanged, at_cut).mean()),
            "qqp": float(refit.cache_hits(qqp_found, at_cut).mean()),
        }
        results |= {"vetoed": vetoed, "versus_policy": comparison, "verified_share": verified}
    RESULTS.mkdir(exist_ok=True)
    name = "verifier_veto" + ("" if verifier.LAYERS == 3 else f"-{verifier.LAYERS}-layers")
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
