"""HitPolicy: whether the nearest cached prompt is close enough to reuse its answer.

The one place hit decisions are made, for the shards and for `semcache eval`. In order:

1. The category: the request's, else detected (code vs prose).
2. The threshold: the tenant's override for the category, else the category's, else the
   default; a request's `min_similarity` can only raise it. Below it: a miss.
3. The guards (`guards.py`): each that fires either vetoes the hit or demands a higher
   similarity, as the policy says.
4. The calibrated model, when the policy has one: the probability that the candidate is
   right, from similarity, guard signals and lexical features; below its cut: a miss.

Every decision says which threshold applied, the category, and the guard (or "model")
that turned a would-be hit into a miss. A policy is data: `HitPolicy.load(file)` reads the
JSON that `semcache calibrate` writes or a person edits (schema in docs/quality.md).

Similarities mean different things under different embedding models, so a policy names
the model it was fitted for (`embedder`), and `PolicySet` picks each namespace's policy by
the model of its vectors. The project ships one per model it builds (`policies/`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from semcache.quality import guards
from semcache.quality.features import FEATURES, features

DEFAULT_CATEGORY = "default"
CATEGORIES = ("default", "factual", "code", "creative")
VETO = "veto"

_CODE = re.compile(
    # Syntax: backticks, calls, statements, flags, includes, SQL.
    r"`|\w\(\)|\w\.\w+\(|[{};]\s*$|=>|::|#include|\$\w+|\s--\w|\bselect\b[^\n]{0,200}?\bfrom\b|"
    # Vocabulary that only programming and operations questions use.
    r"\b(python|javascript|typescript|java|golang|rust|c\+\+|c#|php|ruby|kotlin|swift|sql|"
    r"mysql|postgres(ql)?|sqlite|mongodb|redis|bash|shell|powershell|json|yaml|html|css|regex|"
    r"api|git|github|docker|kubectl|kubernetes|k8s|npm|pip|conda|linux|ubuntu|debian|macos|"
    r"compiler?|runtime|exception|traceback|stack ?trace|segfault|null ?pointer|dataframe|"
    r"pandas|numpy|react|django|flask|nginx|http|tcp|dns|ssh|tls|ssl|cli|sdk|ide|vscode|"
    r"vim|emacs|recursion|boolean|integer|variable|function|method|array|string|"
    r"dict(ionary)?|list comprehension|async|await|lambda|deploy(ment)?|database|server)\b",
    re.IGNORECASE | re.MULTILINE,
)


def detect_category(prompt: str) -> str:
    """ "code" for programming and ops questions (syntax or vocabulary), else "default".
    Reads the first 2,000 characters: enough to tell, and a bounded cost per request."""
    return "code" if _CODE.search(prompt[:2000]) else DEFAULT_CATEGORY


@dataclass(frozen=True, slots=True)
class Decision:
    hit: bool
    #: The similarity this candidate needed: the floor, or with a model the similarity at
    #: which it would reach the cut (all its other features as they are).
    threshold: float
    category: str
    guard: str = ""  # the guard (or "model") that turned a would-be hit into a miss
    #: The guards that fired on a candidate at or above the floor (vetoes and signals).
    fired: tuple[str, ...] = ()
    probability: float | None = None  # the calibrated model's, when it has one
    cut: float | None = None  # the probability it needed


@dataclass(frozen=True, slots=True)
class LogisticModel:
    """p(right) = sigmoid(bias + weights · features); a hit needs p >= the cut (the
    category's own cut when it has one)."""

    weights: tuple[float, ...]
    bias: float
    cut: float
    #: Feature scaling learnt with the weights: x' = (x - mean) / scale.
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    cuts: Mapping[str, float] = field(default_factory=dict)

    def cut_for(self, category: str) -> float:
        return self.cuts.get(category, self.cut)

    def _logit(self, x: tuple[float, ...]) -> float:
        # NaN (an unknown feature) reads as the mean: it adds nothing either way.
        return self.bias + sum(
            w * (v - m) / s
            for w, v, m, s in zip(self.weights, x, self.mean, self.scale, strict=True)
            if not math.isnan(v)
        )

    def probability(self, x: tuple[float, ...]) -> float:
        return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, self._logit(x)))))

    def similarity_needed(self, x: tuple[float, ...], category: str) -> float:
        """The similarity at which this candidate, all else equal, would reach the cut: what
        a response reports as the threshold used."""
        i = FEATURES.index("similarity")
        w, m, s = self.weights[i], self.mean[i], self.scale[i]
        if w <= 0:
            return math.inf
        cut = self.cut_for(category)
        rest = self._logit(x) - w * (x[i] - m) / s
        return m + s * (math.log(cut / (1 - cut)) - rest) / w

    def to_json(self) -> dict[str, Any]:
        return {
            "features": list(FEATURES),
            "weights": list(self.weights),
            "bias": self.bias,
            "cut": self.cut,
            "cuts": dict(self.cuts),
            "mean": list(self.mean),
            "scale": list(self.scale),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LogisticModel:
        if list(data.get("features", ())) != list(FEATURES):
            raise ValueError(f"model.features: expected {list(FEATURES)} (refit the policy)")
        n = len(FEATURES)
        model = cls(
            weights=tuple(map(float, data["weights"])),
            bias=float(data["bias"]),
            cut=float(data["cut"]),
            mean=tuple(map(float, data["mean"])),
            scale=tuple(map(float, data["scale"])),
            cuts={str(k): float(v) for k, v in (data.get("cuts") or {}).items()},
        )
        numbers = (*model.weights, model.bias, *model.mean, *model.scale)
        if not all(math.isfinite(v) for v in numbers):
            raise ValueError("model: weights, bias, mean and scale must be finite numbers")
        if not (len(model.weights) == len(model.mean) == len(model.scale) == n):
            raise ValueError(f"model: weights, mean and scale need {n} values each")
        if not all(0 < c < 1 for c in (model.cut, *model.cuts.values())) or any(
            s <= 0 for s in model.scale
        ):
            raise ValueError("model: cuts must be in (0, 1) and every scale > 0")
        return model


def _check_similarity(where: str, value: Any) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not -1 <= value <= 1
    ):
        raise ValueError(f"{where}: must be a cosine similarity in [-1, 1], got {value!r}")
    return float(value)


@dataclass(frozen=True)
class HitPolicy:
    thresholds: Mapping[str, float] = field(default_factory=lambda: {DEFAULT_CATEGORY: 0.9})
    #: tenant -> category -> threshold
    tenants: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    #: guard -> "veto" or the similarity required when it fires
    guards: Mapping[str, str | float] = field(default_factory=dict)
    model: LogisticModel | None = None
    name: str = "custom"
    #: The name of the embedding model the policy was fitted for ("": any model).
    embedder: str = ""

    def __post_init__(self) -> None:
        if DEFAULT_CATEGORY not in self.thresholds:
            raise ValueError(f"thresholds: needs a {DEFAULT_CATEGORY!r} entry")
        for category, value in self.thresholds.items():
            _check_similarity(f"thresholds.{category}", value)
        for tenant, overrides in self.tenants.items():
            for category, value in overrides.items():
                _check_similarity(f"tenants.{tenant}.{category}", value)
        for guard, action in self.guards.items():
            if guard not in guards.GUARDS:
                known = ", ".join(guards.GUARDS)
                raise ValueError(f"guards.{guard}: unknown guard; known: {known}")
            if action != VETO:
                _check_similarity(f"guards.{guard} (veto or a similarity)", action)

    # -- construction --------------------------------------------------------------------

    @classmethod
    def static(cls, threshold: float) -> HitPolicy:
        """One threshold for everything, no guards: what the systems we replace do."""
        return cls(thresholds={DEFAULT_CATEGORY: threshold}, name=f"static {threshold:.2f}")

    @classmethod
    def default(cls) -> HitPolicy:
        """The shipped policy of the tuned embedder, which shards serve once it is built
        (chosen in docs/quality.md)."""
        return PolicySet.shipped().for_model(TUNED_EMBEDDER)

    @classmethod
    def load(cls, path: Path) -> HitPolicy:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            policy = cls.from_json(data)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f"policy file {path}: {e}") from e
        return policy

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> HitPolicy:
        if not isinstance(data, Mapping):
            raise ValueError("must be a JSON object")
        unknown = set(data) - {
            "name",
            "embedder",
            "thresholds",
            "tenants",
            "guards",
            "model",
            "fitted",
            "schema",
        }
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(sorted(unknown))}")
        model = data.get("model")
        return cls(
            thresholds=dict(data.get("thresholds") or {DEFAULT_CATEGORY: 0.9}),
            tenants={t: dict(o) for t, o in (data.get("tenants") or {}).items()},
            guards=dict(data.get("guards") or {}),
            model=LogisticModel.from_json(model) if model else None,
            name=str(data.get("name", "custom")),
            embedder=str(data.get("embedder", "")),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": 1,
            "name": self.name,
            "embedder": self.embedder,
            "thresholds": dict(self.thresholds),
            "tenants": {t: dict(o) for t, o in self.tenants.items()},
            "guards": dict(self.guards),
            "model": self.model.to_json() if self.model else None,
        }

    # -- decisions -----------------------------------------------------------------------

    def threshold_for(
        self, category: str, tenant: str = "", min_similarity: float | None = None
    ) -> float:
        """The lowest similarity that can hit: the search can skip anything below it."""
        overrides = self.tenants.get(tenant, {})
        threshold = overrides.get(category, self.thresholds.get(category))
        if threshold is None:
            threshold = overrides.get(DEFAULT_CATEGORY, self.thresholds[DEFAULT_CATEGORY])
        return threshold if min_similarity is None else max(threshold, min_similarity)

    def decide(
        self,
        query: str,
        cached: str,
        similarity: float,
        *,
        second: float | None = None,
        category: str = "",
        tenant: str = "",
        min_similarity: float | None = None,
    ) -> Decision:
        """Whether `cached` (the nearest entry's prompt, at `similarity`) answers `query`.

        `second` is the similarity of the next-best entry, when there is one.
        """
        category = category or detect_category(query)
        threshold = self.threshold_for(category, tenant, min_similarity)
        if not math.isfinite(similarity) or similarity < threshold:
            return Decision(False, threshold, category)
        a, b = guards.read(query), guards.read(cached)  # once: the guards and the model
        fired = guards.signals(a, b)
        for guard in fired:
            action = self.guards.get(guard)
            if action == VETO or (action is not None and similarity < float(action)):
                return Decision(False, threshold, category, guard=guard, fired=fired)
        if self.model is None:
            return Decision(True, threshold, category, fired=fired)
        x = features(a, b, similarity, second, fired)
        p, cut = self.model.probability(x), self.model.cut_for(category)
        needed = min(1.0, max(threshold, self.model.similarity_needed(x, category)))
        return Decision(
            p >= cut,
            needed,
            category,
            guard="" if p >= cut else "model",
            fired=fired,
            probability=p,
            cut=cut,
        )


def model_name(model_id: str) -> str:
    """The model name inside an embedder's model id (`<name>-int8-<recipe hash>`, as
    embedder.proto says); the id itself when it is not of that form."""
    name, separator, _ = model_id.rpartition("-int8-")
    return name if separator else model_id


#: The shipped policies, one per embedding model the project builds.
POLICIES_DIR = Path(__file__).with_name("policies")
#: The tuned embedder's name (embed_svc/build/recipe.py builds it).
TUNED_EMBEDDER = "all-MiniLM-L6-v2-semcache"


@dataclass(frozen=True)
class PolicySet:
    """Hit policies by the embedding model they were fitted for."""

    policies: tuple[HitPolicy, ...]

    def __post_init__(self) -> None:
        if not self.policies:
            raise ValueError("a policy set needs at least one policy")

    def for_model(self, model_id: str) -> HitPolicy:
        """The policy fitted for the model of `model_id`, else one for any model, else the
        first (a namespace whose model is not known yet)."""
        name = model_name(model_id)
        for policy in self.policies:
            if policy.embedder == name:
                return policy
        for policy in self.policies:
            if not policy.embedder:
                return policy
        return self.policies[0]

    def map(self, change: Callable[[HitPolicy], HitPolicy]) -> PolicySet:
        return PolicySet(tuple(change(p) for p in self.policies))

    @classmethod
    def shipped(cls) -> PolicySet:
        """The project's policies (`policies/*.json`), the tuned embedder's first."""
        paths = sorted(POLICIES_DIR.glob("*.json"))
        policies = sorted(
            (HitPolicy.load(p) for p in paths), key=lambda p: p.embedder != TUNED_EMBEDDER
        )
        return cls(tuple(policies))
