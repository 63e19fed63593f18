"""What would a text's vector cost to depend on nothing but the text? (`python -m bench
quantize`)

The served int8 model is quantized dynamically: each batch's activations get one scale,
so a text's vector depends on the texts it ran with (`bench batch_noise`: 1 % of the test
split's decisions change with the order). Static quantization fixes the activation scales
at build time from calibration texts, so batching changes nothing. This builds, from the
stock weights in the model build environment (`bench/quantize_model.py`), the fp32
export, the shipped dynamic int8 model, and two static ones (QDQ, per-channel int8
weights, uint8 activations, MinMax calibration on CALIBRATION texts of the train split;
attention's activation-by-activation products stay fp32, and in the second the FFN down
projections too), and measures on the 270 sentences of `embed_svc/build/sentences.txt` and
EVALUATION texts of the test split: agreement with fp32, how far a text moves between
batchings, and texts per second on one thread. Writes bench/results/quantize.json.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

from bench.embed import machine
from bench.refit import ROOT
from embed_svc.build import recipe
from embed_svc.build.__main__ import ensure_build_env
from semcache.evaluation import data

RESULTS = ROOT / "bench" / "results"
SCRIPT = Path(__file__).with_name("quantize_model.py")
CALIBRATION = 400
EVALUATION = 400


def main() -> None:
    python = ensure_build_env()
    groups = data.load_pairs(recipe.GROUPS_DIR)
    train = data.texts_of(data.select(groups, "train"))
    test = data.texts_of(data.select(groups, "test"))
    sentences = [s for s in (recipe.RECIPE_DIR / "sentences.txt").read_text().splitlines() if s]
    texts = {"calibration": train[:CALIBRATION], "evaluation": sentences + test[:EVALUATION]}
    with tempfile.TemporaryDirectory(prefix="semcache-quantize-") as tmp:
        work = Path(tmp)
        (work / "texts.json").write_text(json.dumps(texts), encoding="utf-8")
        out = work / "result.json"
        argv = [python, SCRIPT, "--texts", work / "texts.json", "--work", work, "--out", out]
        subprocess.run([str(a) for a in argv], check=True)
        variants = json.loads(out.read_text(encoding="utf-8"))
    results = {
        "machine": machine(),
        "weights": recipe.WEIGHTS_PACKAGE,
        "texts": {name: len(t) for name, t in texts.items()},
        "variants": variants,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "quantize.json").write_text(json.dumps(results, indent=1) + "\n")
