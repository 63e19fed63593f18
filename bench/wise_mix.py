"""Moves fine-tuned weights back toward the pretrained ones (WiSE-FT), in the model build
environment (torch): every floating-point tensor becomes base + alpha * (tuned - base).

    python wise_mix.py --base DIR --tuned DIR --alpha 0.7 --out DIR

`--out` gets the tuned directory's files (tokenizer, sentence-transformers description)
with the mixed weights.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from transformers import AutoModel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base", type=Path, required=True)
    parser.add_argument("--tuned", type=Path, required=True)
    parser.add_argument("--alpha", type=float, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    base = AutoModel.from_pretrained(str(args.base)).state_dict()
    model = AutoModel.from_pretrained(str(args.tuned))
    mixed = {
        name: base[name] + args.alpha * (tuned - base[name]) if tuned.is_floating_point() else tuned
        for name, tuned in model.state_dict().items()
    }
    model.load_state_dict(mixed)
    shutil.copytree(args.tuned, args.out, dirs_exist_ok=True)
    model.save_pretrained(str(args.out))


if __name__ == "__main__":
    main()
