"""Fine-tune the MiniLM sentence encoder for caching: paraphrases close, near-miss traps apart.

Runs inside the build environment (torch). Contrastive training (multiple negatives ranking,
both directions): each example is (anchor, positive, hard negatives); the other examples'
positives and negatives in the batch are negatives too. Anchors and positives are two texts
one answer serves (a base prompt and its paraphrase); the hard negatives are the anchor's
own traps, questions one word away that need another answer. Word embeddings and the lowest
layers stay frozen: the data is small, a word the data never shows keeps its pretrained
place, and the backward pass stops early (the build has minutes, not hours).

    python train.py --examples train.jsonl --weights DIR --out DIR [--epochs 1] [--seed 0]

`--examples` holds one JSON object a line: {"anchor": str, "positive": str, "negatives":
[str, ...]}. Prints progress with the time left. Writes a Hugging Face model directory that
export.py turns into ONNX.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import torch
from transformers import AutoModel, AutoTokenizer

B = TypeVar("B")
#: Training texts are cut here: prompts worth caching are short, and attention cost grows
#: with the square of the length.
MAX_TRAIN_TOKENS = 64


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, p=2, dim=1)


class Encoder:
    def __init__(self, weights: Path) -> None:
        self.tokenizer = AutoTokenizer.from_pretrained(str(weights))
        self.model = AutoModel.from_pretrained(str(weights), attn_implementation="eager")

    def __call__(self, texts: list[str]) -> torch.Tensor:
        batch = self.tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=MAX_TRAIN_TOKENS,
            return_tensors="pt",
        )
        hidden = self.model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            token_type_ids=torch.zeros_like(batch["input_ids"]),
        ).last_hidden_state
        return mean_pool(hidden, batch["attention_mask"])


Example = tuple[str, str, tuple[str, ...]]


def load_examples(path: Path) -> list[Example]:
    examples = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                examples.append((r["anchor"], r["positive"], tuple(r.get("negatives", ()))))
    return examples


def batches(examples: list[Example], size: int, rng: random.Random) -> list[list[Example]]:
    """Shuffled batches in which no anchor appears twice (its other positives would count
    as negatives for it)."""
    order = examples[:]
    rng.shuffle(order)
    out: list[list[Example]] = []
    current: list[Example] = []
    anchors: set[str] = set()
    held: list[Example] = []
    for example in order:
        if example[0] in anchors:
            held.append(example)
            continue
        current.append(example)
        anchors.add(example[0])
        if len(current) == size:
            out.append(current)
            current, anchors = [], set()
            pending, held = held, []
            for e in pending:  # retry the held ones in the next batch
                if e[0] in anchors or len(current) == size:
                    held.append(e)
                else:
                    current.append(e)
                    anchors.add(e[0])
    if len(current) >= size // 2:
        out.append(current)
    return out


def loss_of(encoder: Encoder, batch: list[Example], scale: float) -> torch.Tensor:
    anchors = [a for a, _, _ in batch]
    positives = [p for _, p, _ in batch]
    negatives = [n for _, _, ns in batch for n in ns]
    vectors = encoder(anchors + positives + negatives)
    a = vectors[: len(batch)]
    candidates = vectors[len(batch) :]  # positives, then hard negatives
    labels = torch.arange(len(batch))
    forward = torch.nn.functional.cross_entropy(scale * a @ candidates.T, labels)
    # And from each positive back to the anchors: the relation is symmetric.
    backward = torch.nn.functional.cross_entropy(scale * candidates[: len(batch)] @ a.T, labels)
    return (forward + backward) / 2


def optimize(
    params: list[torch.nn.Parameter],
    lr: float,
    plan: Sequence[B],
    loss_of: Callable[[B], torch.Tensor],
    name: str,
    every: int = 20,
) -> None:
    """One step a batch of `plan`: AdamW, the learning rate warmed up over the first tenth of
    the steps and decayed linearly to 0, gradients clipped at norm 1. Prints the running
    loss and the time left every `every` steps."""
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    total = len(plan)
    warmup = max(1, total // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: min((step + 1) / warmup, max(0.0, (total - step) / max(1, total - warmup))),
    )
    started, running = time.monotonic(), 0.0
    for step, batch in enumerate(plan, 1):
        loss = loss_of(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        running = 0.98 * running + 0.02 * loss.item() if step > 1 else loss.item()
        if step % every == 0 or step == total:
            elapsed = time.monotonic() - started
            left = elapsed / step * (total - step)
            print(
                f"{name}: step {step}/{total}  loss {running:.3f}  "
                f"{elapsed / 60:.1f} min, about {left / 60:.1f} min left",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--examples", type=Path, required=True)
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-5)
    parser.add_argument("--scale", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-steps", type=int, help="stop after this many steps")
    parser.add_argument(
        "--frozen-layers", type=int, default=2, help="lowest layers kept as they are"
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    args = parser.parse_args()

    random.seed(args.seed)
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    examples = load_examples(args.examples)
    encoder = Encoder(args.weights)
    encoder.model.embeddings.requires_grad_(False)
    for layer in encoder.model.encoder.layer[: args.frozen_layers]:
        layer.requires_grad_(False)
    encoder.model.train()
    params = [p for p in encoder.model.parameters() if p.requires_grad]

    rng = random.Random(args.seed)
    plan = []
    whole, part = int(args.epochs), args.epochs - int(args.epochs)
    for _ in range(whole):
        plan += batches(examples, args.batch_size, rng)
    if part:
        extra = batches(examples, args.batch_size, rng)
        plan += extra[: math.ceil(part * len(extra))]
    if args.max_steps is not None:
        plan = plan[: args.max_steps]
    print(f"train: {len(examples)} examples, {len(plan)} steps of {args.batch_size}", flush=True)
    started = time.monotonic()
    optimize(params, args.lr, plan, lambda batch: loss_of(encoder, batch, args.scale), "train")
    encoder.model.eval()
    args.out.mkdir(parents=True, exist_ok=True)
    encoder.model.save_pretrained(str(args.out))
    encoder.tokenizer.save_pretrained(str(args.out))
    # The tokenizer is not trained: ship the package's own file, byte for byte. And the
    # sentence-transformers description (pooling, normalisation, the 256-token window), so
    # export.py's check loads the tuned weights exactly as the stock ones.
    shutil.copy(args.weights / "tokenizer.json", args.out / "tokenizer.json")
    for name in ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json"):
        shutil.copy(args.weights / name, args.out / name)
    shutil.copytree(args.weights / "1_Pooling", args.out / "1_Pooling", dirs_exist_ok=True)
    print(f"train: done in {(time.monotonic() - started) / 60:.1f} min", file=sys.stderr)


if __name__ == "__main__":
    main()
