"""The tuned model's training and gate data, made from the project's pairs at build time.

Part of the tuned recipe (`recipe.TUNED` hashes this file): everything here shapes the model.
"""

from __future__ import annotations

import json
from pathlib import Path

from embed_svc.build import recipe
from semcache.quality import augment, dataset

#: STS-B train pairs scored at least this (of 5) are paraphrases enough to train on.
STSB_MIN_SCORE = 4.0
#: The seed of the augmentation and of train.py's batches.
SEED = 0


def _write_jsonl(path: Path, records: list[dict]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


def _stsb_positives() -> list[tuple[str, str]]:
    with recipe.STSB_FILE.open(encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [(r["a"], r["b"]) for r in rows if r["score"] >= STSB_MIN_SCORE]


def prepare(work: Path) -> dict[str, int]:
    """Writes examples.jsonl (train split, augmented, plus STS-B) and dev.jsonl (the dev
    split's written pairs, for the gate); returns their counts."""
    groups = dataset.load_groups([recipe.GROUPS_DIR])
    train = [g for g in groups if g.split == "train"]
    dev = [g for g in groups if g.split == "dev"]
    made = augment.training_examples(train, _stsb_positives(), seed=SEED)
    _write_jsonl(work / "examples.jsonl", [e.to_json() for e in made])
    _write_jsonl(work / "dev.jsonl", [p for g in dev for p in dataset.pairs_of(g)])
    return {"train_groups": len(train), "dev_groups": len(dev), "examples": len(made)}
