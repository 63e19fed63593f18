"""How much do hit decisions depend on the batch a prompt was embedded in? (`python -m bench
batch_noise`)

Dynamic int8 quantization picks one activation scale per batch (docs/embedder.md), so a
text's vector depends on the texts it ran with, and under load a batch is whatever is
queued. This embeds the texts of the project's test split through a private embedder of
the tuned model in requests of BATCH texts, one request at a time (no other texts share
its batches): in the split's order and in two seeded shuffles, and the first ALONE texts
each alone. It reports how far a text's vectors are from each other (cosine),
how much each pair's cosine moves between two orders, and how many of the shipped
policy's decisions (each pair alone) differ. It also bounds what any comparison of two
judges measured through the embedder can tell apart. Writes
bench/results/batch_noise.json.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence

import grpc
import numpy as np

from bench.embed import machine
from bench.refit import ROOT
from semcache.evaluation import data, embeddings
from semcache.quality.policy import HitPolicy
from semcache.v1 import embedder_pb2, embedder_pb2_grpc

RESULTS = ROOT / "bench" / "results"
#: Texts per request: what `semcache eval` sends (and the service's largest batch).
BATCH = embeddings.BATCH
#: Texts also embedded each alone.
ALONE = 600
SEEDS = (1, 2)


def embedded(
    stub: embedder_pb2_grpc.EmbedderStub, texts: Sequence[str], batch: int
) -> tuple[dict[str, np.ndarray], str]:
    """Each text's vector, and the model that made them."""
    vectors: dict[str, np.ndarray] = {}
    model = ""
    for start in range(0, len(texts), batch):
        chunk = list(texts[start : start + batch])
        reply = stub.Embed(embedder_pb2.EmbedRequest(texts=chunk), timeout=60)
        model = reply.model
        for text, e in zip(chunk, reply.embeddings, strict=True):
            vectors[text] = np.frombuffer(e.vector, dtype="<f4")
    return vectors, model


def spread(values: np.ndarray) -> dict[str, float]:
    return {
        "min": round(float(values.min()), 4),
        "p01": round(float(np.quantile(values, 0.01)), 4),
        "median": round(float(np.median(values)), 4),
    }


def main() -> None:
    pairs = data.select(data.load_pairs(ROOT / "data" / "pairs" / "groups"), "test")
    texts = data.texts_of(pairs)
    policy = HitPolicy.default()
    runs: dict[str, dict[str, np.ndarray]] = {}
    with (
        embeddings.private_embedder() as address,
        grpc.insecure_channel(address) as channel,
    ):
        stub = embedder_pb2_grpc.EmbedderStub(channel)
        runs["in order"], model = embedded(stub, texts, BATCH)
        for seed in SEEDS:
            shuffled = texts[:]
            random.Random(seed).shuffle(shuffled)
            runs[f"shuffled {seed}"], _ = embedded(stub, shuffled, BATCH)
        runs["alone"], _ = embedded(stub, texts[:ALONE], 1)

    def cosines(run: dict[str, np.ndarray]) -> np.ndarray:
        return np.array([float(run[p.a] @ run[p.b]) for p in pairs])

    def hits(similarity: np.ndarray) -> np.ndarray:
        return np.array(
            [
                policy.decide(p.b, p.a, float(s), category=p.category).hit
                for p, s in zip(pairs, similarity, strict=True)
            ]
        )

    first = runs["in order"]
    base_cosine = cosines(first)
    base_hits = hits(base_cosine)
    label = np.array([p.label == 1 for p in pairs])

    def kept_and_served(hit: np.ndarray) -> dict[str, float]:
        return {
            "kept": round(100 * float(hit[label].mean()), 2),
            "served": round(100 * float(hit[~label].mean()), 2),
        }

    orders: dict[str, dict] = {"in order": kept_and_served(base_hits)}
    for name in (f"shuffled {seed}" for seed in SEEDS):
        run = runs[name]
        moved = np.abs(cosines(run) - base_cosine)
        run_hits = hits(cosines(run))
        changed = run_hits != base_hits
        orders[name] = {
            **kept_and_served(run_hits),
            "text against itself in order": spread(np.array([first[t] @ run[t] for t in texts])),
            "pair cosine moved": {
                "mean": round(float(moved.mean()), 4),
                "p99": round(float(np.quantile(moved, 0.99)), 4),
                "max": round(float(moved.max()), 4),
            },
            "decisions changed": int(changed.sum()),
            "paraphrases changed": int(changed[label].sum()),
            "traps changed": int(changed[~label].sum()),
        }
    alone = runs["alone"]
    results = {
        "machine": machine(),
        "model": model,
        "policy": policy.name,
        "pairs": len(pairs),
        "paraphrases": int(label.sum()),
        "traps": int((~label).sum()),
        "batch": BATCH,
        "in order against alone": spread(np.array([first[t] @ alone[t] for t in alone])),
        "against the split's order": orders,
    }
    print(json.dumps(results, indent=1))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "batch_noise.json").write_text(json.dumps(results, indent=1) + "\n")
