"""A pair verifier (`python -m bench verifier` trains and scores it; it does not ship).

A cross-encoder that reads two prompts together and gives the probability that one answer
is fully right for both. Runs inside the model build environment (torch). Starts from the
MiniLM weights (optionally only their first `--layers` layers: a smaller, faster verifier),
reads "[CLS] a [SEP] b [SEP]", mean-pools the last layer and maps it to one logit. Binary
cross-entropy on soft labels (1 / 0 for the project's pairs, STS-B's scores mapped onto
[0, 1]); each pair in a random order; word embeddings frozen.

    python verifier_model.py train --pairs pairs.jsonl --weights DIR --out DIR [--layers 3]
    python verifier_model.py score --model DIR --pairs pairs.jsonl --out probabilities.npy

`--pairs` holds one JSON object a line: {"a": str, "b": str, "label": float in [0, 1]}
(`score` ignores the label). `train` writes a Hugging Face model directory plus `head.pt`
(the pooled -> logit layer).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer

# The model build's training loop (run from the build environment, like the build does).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "embed_svc" / "build"))
from train import optimize

#: Two prompts together; longer pairs are cut (most cacheable prompts are far shorter).
MAX_PAIR_TOKENS = 128


class Verifier(torch.nn.Module):
    def __init__(self, weights: Path, layers: int | None = None) -> None:
        super().__init__()
        self.bert = AutoModel.from_pretrained(str(weights), attn_implementation="eager")
        if layers is not None and layers < len(self.bert.encoder.layer):
            self.bert.encoder.layer = self.bert.encoder.layer[:layers]
            self.bert.config.num_hidden_layers = layers
        self.head = torch.nn.Linear(self.bert.config.hidden_size, 1)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> torch.Tensor:
        hidden = self.bert(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return self.head(pooled).squeeze(-1)


def encode(tokenizer, pairs: list[tuple[str, str]]) -> dict[str, torch.Tensor]:
    return tokenizer(
        [a for a, _ in pairs],
        [b for _, b in pairs],
        padding=True,
        truncation="longest_first",
        max_length=MAX_PAIR_TOKENS,
        return_tensors="pt",
    )


def train(args: argparse.Namespace) -> None:
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    rows = [json.loads(line) for line in args.pairs.open(encoding="utf-8") if line.strip()]
    examples = [(r["a"], r["b"], float(r["label"])) for r in rows]
    tokenizer = AutoTokenizer.from_pretrained(str(args.weights))
    model = Verifier(args.weights, args.layers)
    model.bert.get_input_embeddings().weight.requires_grad_(False)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]

    rng = random.Random(args.seed)
    plan = []
    for _ in range(args.epochs):
        # Either order, at random: the verdict must not depend on which text was cached.
        order = [(b, a, y) if rng.random() < 0.5 else (a, b, y) for a, b, y in examples]
        rng.shuffle(order)
        plan += [order[i : i + args.batch_size] for i in range(0, len(order), args.batch_size)]
    print(f"verifier: {len(examples)} examples, {len(plan)} steps of {args.batch_size}", flush=True)

    def loss_of(batch: list[tuple[str, str, float]]) -> torch.Tensor:
        logits = model(**encode(tokenizer, [(a, b) for a, b, _ in batch]))
        labels = torch.tensor([y for _, _, y in batch])
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)

    optimize(params, args.lr, plan, loss_of, "verifier", every=50)
    model.eval()
    args.out.mkdir(parents=True, exist_ok=True)
    model.bert.save_pretrained(str(args.out))
    tokenizer.save_pretrained(str(args.out))
    shutil.copy(args.weights / "tokenizer.json", args.out / "tokenizer.json")
    torch.save(model.head.state_dict(), args.out / "head.pt")


def score(args: argparse.Namespace) -> None:
    tokenizer = AutoTokenizer.from_pretrained(str(args.model))
    model = Verifier(args.model)
    model.head.load_state_dict(torch.load(args.model / "head.pt"))
    model.eval()
    rows = [json.loads(line) for line in args.pairs.open(encoding="utf-8") if line.strip()]
    probabilities = []
    with torch.no_grad():
        for i in range(0, len(rows), 64):
            pairs = [(r["a"], r["b"]) for r in rows[i : i + 64]]
            probabilities.append(torch.sigmoid(model(**encode(tokenizer, pairs))).numpy())
    np.save(args.out, np.concatenate(probabilities) if probabilities else np.zeros(0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("train")
    p.add_argument("--pairs", type=Path, required=True)
    p.add_argument("--weights", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--layers", type=int, default=None)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=4e-5)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=train)
    p = commands.add_parser("score")
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--pairs", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(run=score)
    torch.set_num_threads(os.cpu_count() or 1)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
