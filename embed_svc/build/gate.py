"""The tuned model's quality gate, on the dev split of the project's pairs.

Runs inside the build environment, on the int8 ONNX artifacts (what will be served):

    python gate.py --model DIR --baseline DIR --pairs dev.jsonl --out quality.json

For each model, each pair's cosine; then the threshold at which `TRAP_RATE` of the dev traps
(label 0) would be served, and the share of paraphrases (label 1) that threshold keeps,
overall and per kind. The model passes when it keeps at least `MIN_KEPT` and beats the
baseline (the stock model) by at least `MIN_GAIN`. Exit status 1 with the reason otherwise:
the build then keeps nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from export import embed_batched, session
from tokenizers import Tokenizer

#: The share of dev traps served at the threshold the gate compares models at.
TRAP_RATE = 0.05
#: Paraphrases kept at that threshold, at least (the tuned model kept 0.xx when this was
#: set; the stock model 0.xx).
MIN_KEPT = 0.70
#: ... and at least this much more than the stock model keeps.
MIN_GAIN = 0.10


def load_pairs(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def cosines(model_dir: Path, pairs: list[dict]) -> np.ndarray:
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    texts = sorted({t for p in pairs for t in (p["a"], p["b"])}, key=len)
    vectors = embed_batched(session(model_dir / "model.onnx"), tokenizer, texts)
    row = {t: i for i, t in enumerate(texts)}
    a = vectors[[row[p["a"]] for p in pairs]]
    b = vectors[[row[p["b"]] for p in pairs]]
    return (a * b).sum(axis=1)


def kept_at_trap_rate(cos: np.ndarray, pairs: list[dict]) -> dict:
    labels = np.array([p["label"] for p in pairs])
    kinds = np.array([p.get("kind", "") for p in pairs])
    threshold = float(np.quantile(cos[labels == 0], 1 - TRAP_RATE))
    hit = cos > threshold
    by_kind = {str(kind): round(float(hit[kinds == kind].mean()), 4) for kind in sorted(set(kinds))}
    return {
        "threshold": round(threshold, 4),
        "paraphrases_kept": round(float(hit[labels == 1].mean()), 4),
        "traps_served": round(float(hit[labels == 0].mean()), 4),
        "by_kind": by_kind,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--baseline", type=Path, required=True)
    parser.add_argument("--pairs", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    pairs = load_pairs(args.pairs)
    model = kept_at_trap_rate(cosines(args.model, pairs), pairs)
    baseline = kept_at_trap_rate(cosines(args.baseline, pairs), pairs)
    report = {
        "gate": {"trap_rate": TRAP_RATE, "min_kept": MIN_KEPT, "min_gain": MIN_GAIN},
        "dev_pairs": len(pairs),
        "model": model,
        "baseline": baseline,
    }
    args.out.write_text(json.dumps({"quality_gate": report}, indent=2) + "\n")
    kept, base = model["paraphrases_kept"], baseline["paraphrases_kept"]
    print(
        f"gate: at {TRAP_RATE:.0%} of dev traps served, the model keeps {kept:.1%} of "
        f"paraphrases, the stock model {base:.1%} ({len(pairs)} dev pairs)",
        flush=True,
    )
    if kept < MIN_KEPT or kept - base < MIN_GAIN:
        sys.exit(
            f"quality gate failed: the model keeps {kept:.1%} of dev paraphrases at "
            f"{TRAP_RATE:.0%} of traps served; it needs {MIN_KEPT:.0%} and "
            f"{MIN_GAIN:.0%} more than the stock model's {base:.1%}"
        )


if __name__ == "__main__":
    main()
