"""The calibrator: fits the hit model on one split of labelled pairs, to be judged on the other.

It learns what a shard decides: a cache holds every distinct `a` of the fit split and is
asked every `b`; for each query the nearest entry is a *right* candidate (one of the query's
true duplicates) or not. Candidates below the policy's floor threshold or vetoed by its
guards never reach the model at serve time, so they are left out of the fit too.

1. Guards: each is measured on the fit split, among the hits of a model fitted without
   vetoes: the wrong hits it would remove against the right hits it would lose. A guard
   whose removed hits are right less often than the model's marginal hit becomes a veto;
   the others only feed the model as features.
2. A logistic regression (L2, Newton's method, standardised features: `features.py`).
3. The cut on its probability: the lowest that keeps precision >= the target on the fit
   split (per category with `by_category`, where a category has enough candidates).

Nothing here reads the test split; `semcache calibrate` reports on it with the evaluation
protocols, as `semcache eval` would.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from semcache.evaluation.data import Pair, Vectors
from semcache.evaluation.metrics import Candidate, stream_candidates
from semcache.quality import guards
from semcache.quality.features import FEATURES, features
from semcache.quality.policy import VETO, HitPolicy, LogisticModel, detect_category

#: Below this many candidates a category keeps the overall cut.
MIN_CATEGORY_ROWS = 200


def fit_logistic(
    x: np.ndarray, y: np.ndarray, l2: float = 1.0, iterations: int = 50
) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """(weights, bias, mean, scale) of an L2-regularised logistic regression on standardised
    features, by Newton's method (few features, so each step is one small solve)."""
    mean = np.nanmean(x, axis=0)
    x = np.where(np.isnan(x), mean, x)  # unknown (margin without a runner-up): the mean
    scale = x.std(axis=0)
    scale[scale < 1e-9] = 1.0  # a constant feature (a guard that never fired) stays inert
    z = np.hstack([np.ones((len(x), 1)), (x - mean) / scale])
    theta = np.zeros(z.shape[1])
    penalty = np.full(z.shape[1], l2)
    penalty[0] = 0.0  # the bias is not shrunk
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(z @ theta, -50, 50)))
        gradient = z.T @ (p - y) + penalty * theta
        hessian = (z * (p * (1 - p))[:, None]).T @ z + np.diag(penalty)
        step = np.linalg.solve(hessian, gradient)
        theta -= step
        if np.abs(step).max() < 1e-8:
            break
    return theta[1:], float(theta[0]), mean, scale


def choose_cut(probability: np.ndarray, right: np.ndarray, target_precision: float) -> float:
    """The lowest probability cut whose hits have precision >= the target (most recall)."""
    order = np.argsort(-probability)
    p, r = probability[order], right[order].astype(float)
    precision = np.cumsum(r) / np.arange(1, len(r) + 1)
    ok = np.flatnonzero(precision >= target_precision)
    if len(ok) == 0:
        return 0.999  # nothing reaches the target: hit (almost) never
    cut = float(p[ok[-1]])
    return min(max(cut, 1e-6), 1 - 1e-6)


def _rows(
    candidates: Sequence[Candidate], base: HitPolicy, vetoes: set[str]
) -> tuple[list[Candidate], np.ndarray, list[str]]:
    """The candidates that reach the model (above the floor, not vetoed), their features
    and categories."""
    rows, x, categories = [], [], []
    for c in candidates:
        category = c.category or detect_category(c.query)
        if c.similarity < base.threshold_for(category):
            continue
        fired = guards.signals(c.query, c.cached)
        if vetoes.intersection(fired):
            continue
        rows.append(c)
        categories.append(category)
        x.append(features(c.query, c.cached, c.similarity, c.second, fired))
    return rows, np.array(x).reshape(len(rows), len(FEATURES)), categories


def _fit(
    candidates: Sequence[Candidate],
    base: HitPolicy,
    vetoes: set[str],
    target_precision: float,
    by_category: bool,
    l2: float,
    cut_candidates: Sequence[Candidate] | None = None,
    use: Sequence[str] = FEATURES,
) -> tuple[HitPolicy, dict]:
    rows, xs, categories = _rows(candidates, base, vetoes)
    if len(rows) < 20 or len({c.right for c in rows}) < 2:
        raise ValueError(
            f"too few candidates to fit ({len(rows)} above the floor, needing right and "
            "wrong ones): use more pairs or a lower floor"
        )
    y = np.array([c.right for c in rows], dtype=float)
    fitted_on, fitted_right = len(rows), int(y.sum())
    # Features left out keep weight 0 (mean 0, scale 1): the model reads them and ignores them.
    columns = [FEATURES.index(name) for name in use]
    fitted, bias, fitted_mean, fitted_scale = fit_logistic(xs[:, columns], y, l2)
    weights, mean, scale = np.zeros(len(FEATURES)), np.zeros(len(FEATURES)), np.ones(len(FEATURES))
    weights[columns], mean[columns], scale[columns] = fitted, fitted_mean, fitted_scale
    model = LogisticModel(
        weights=tuple(weights.tolist()),
        bias=bias,
        cut=0.5,
        mean=tuple(mean.tolist()),
        scale=tuple(scale.tolist()),
    )
    if cut_candidates is not None:  # the cut is chosen on data the weights never saw
        rows, xs, categories = _rows(cut_candidates, base, vetoes)
        y = np.array([c.right for c in rows], dtype=float)
    probability = np.array([model.probability(tuple(v)) for v in xs])
    cuts: dict[str, float] = {}
    if by_category:
        by_row = np.array(categories)
        for category in sorted(set(categories)):
            mask = by_row == category
            if mask.sum() >= MIN_CATEGORY_ROWS:
                cuts[category] = choose_cut(probability[mask], y[mask], target_precision)
    model = dataclasses.replace(model, cut=choose_cut(probability, y, target_precision), cuts=cuts)
    policy = dataclasses.replace(
        base, guards=dict.fromkeys(sorted(vetoes), VETO), model=model, name="calibrated"
    )
    seen = {
        "fitted_on": fitted_on,
        "right": fitted_right,
        "weights": dict(zip(FEATURES, (round(w, 4) for w in weights.tolist()), strict=True)),
        "cut": model.cut,
        "cuts": cuts,
    }
    return policy, seen


def hit_guard_effects(policy: HitPolicy, candidates: Sequence[Candidate]) -> dict[str, dict]:
    """Per guard, among the candidates `policy` hits: wrong hits it would remove as a veto,
    right hits it would lose."""
    effects = {name: {"wrong_removed": 0, "right_lost": 0} for name in guards.GUARDS}
    for c in candidates:
        decision = policy.decide(
            c.query, c.cached, c.similarity, second=c.second, category=c.category
        )
        if decision.hit:
            for name in guards.signals(c.query, c.cached):
                effects[name]["right_lost" if c.right else "wrong_removed"] += 1
    return effects


def calibrate(
    fit_pairs: Sequence[Pair],
    vectors: Vectors,
    *,
    base: HitPolicy,
    target_precision: float,
    by_category: bool = False,
    l2: float = 1.0,
    cut_pairs: Sequence[Pair] | None = None,
    use: Sequence[str] = FEATURES,
) -> tuple[HitPolicy, dict[str, Any]]:
    """A policy fitted on `fit_pairs`, and what the fit saw (for the report).

    `cut_pairs`, when given, choose the cut (the weights are fitted on `fit_pairs` alone).
    `use` names the features the model may weigh (the others get weight 0): lexical shape
    features fit the writing style of the data they are fitted on, which a user's traffic
    may not share.
    Guards pay their way or go: a first model is fitted with every guard as a feature only;
    among the hits it makes, a guard becomes a veto when the hits it would remove are right
    less often than the model's marginal hit (whose probability of being right is the cut),
    i.e. when vetoing beats raising the cut. Then the model is refitted around the vetoes.
    """
    candidates = stream_candidates(fit_pairs, vectors)
    cut_candidates = stream_candidates(cut_pairs, vectors) if cut_pairs else None
    policy, seen = calibrate_candidates(
        candidates,
        base=base,
        target_precision=target_precision,
        by_category=by_category,
        l2=l2,
        cut_candidates=cut_candidates,
        use=use,
    )
    return policy, seen | {"pairs": len(fit_pairs)}


def calibrate_candidates(
    candidates: Sequence[Candidate],
    *,
    base: HitPolicy,
    target_precision: float,
    by_category: bool = False,
    l2: float = 1.0,
    cut_candidates: Sequence[Candidate] | None = None,
    use: Sequence[str] = FEATURES,
) -> tuple[HitPolicy, dict[str, Any]]:
    """`calibrate` on candidates already found (a nearest entry per query)."""
    unknown = set(use) - set(FEATURES)
    if unknown or not use:
        raise ValueError(f"features: unknown {sorted(unknown)}; known: {', '.join(FEATURES)}")
    first, _ = _fit(candidates, base, set(), target_precision, by_category, l2, use=use)
    assert first.model is not None
    effects = hit_guard_effects(first, candidates)
    vetoes = set()
    for name, e in effects.items():
        removed = e["wrong_removed"] + e["right_lost"]
        if removed and e["right_lost"] / removed < first.model.cut:
            vetoes.add(name)
    policy, seen = _fit(
        candidates, base, vetoes, target_precision, by_category, l2, cut_candidates, use
    )
    seen |= {
        "candidates": len(candidates),
        "floor": base.thresholds["default"],
        "target_precision": target_precision,
        "guard_effects": effects,
        "vetoes": sorted(vetoes),
    }
    return policy, seen
