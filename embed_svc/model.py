"""The int8 ONNX sentence encoder: tokenizer + onnxruntime session, no torch.

Blocking and CPU-bound by nature: callers run it off the event loop (see `MicroBatcher`).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from embed_svc.build import recipe


class ModelNotBuiltError(RuntimeError):
    """The model artifact is missing; `make model` builds it."""


@dataclass(frozen=True, slots=True)
class Tokens:
    """One text as the model will see it."""

    ids: np.ndarray  # int64 word-piece ids, [CLS] ... [SEP], at most max_tokens
    truncated: bool

    @property
    def count(self) -> int:
        return len(self.ids)


class EmbeddingModel(Protocol):
    """What the batcher and the service need of a model."""

    model_id: str
    dimension: int
    #: When the model was built (unix seconds): the newer of two models is the one to use.
    built: float

    def tokenize(self, texts: list[str]) -> list[Tokens]: ...
    def run(self, batch: list[Tokens]) -> np.ndarray: ...


class OnnxEmbedder:
    """Encodes texts into L2-normalised float32 vectors (dot product = cosine).

    `tokenize` and `run` are separate so a batcher can size batches by tokens before it
    pays for inference. `run` is thread-safe: onnxruntime sessions allow concurrent `run`
    calls, which is how two 1-thread callers use both cores.
    """

    def __init__(self, model_dir: Path | None = None, intra_op_threads: int = 1) -> None:
        self.model_dir = model_dir or recipe.default_model_dir()
        if not recipe.is_complete(self.model_dir):
            raise ModelNotBuiltError(
                f"no complete model in {self.model_dir}; run `make model` "
                "(or set SEMCACHE_MODEL_DIR to a built artifact)"
            )
        manifest = json.loads((self.model_dir / recipe.MANIFEST_FILE).read_text())
        self.model_id: str = manifest["model_id"]
        self.dimension: int = manifest["dimension"]
        self.max_tokens: int = manifest["max_tokens"]
        self.built: float = dt.datetime.fromisoformat(manifest["built_at"]).timestamp()

        self._tokenizer = Tokenizer.from_file(str(self.model_dir / recipe.TOKENIZER_FILE))
        self._tokenizer.no_padding()  # padding happens per batch in `run`
        self._tokenizer.enable_truncation(self.max_tokens)

        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            str(self.model_dir / recipe.MODEL_FILE), options, providers=["CPUExecutionProvider"]
        )

    def tokenize(self, texts: list[str]) -> list[Tokens]:
        encodings = self._tokenizer.encode_batch(texts)
        return [
            Tokens(ids=np.asarray(e.ids, dtype=np.int64), truncated=bool(e.overflowing))
            for e in encodings
        ]

    def run(self, batch: list[Tokens]) -> np.ndarray:
        """Embeds a batch, padded to its longest member. Returns (len(batch), dimension)."""
        width = max(t.count for t in batch)
        input_ids = np.zeros((len(batch), width), dtype=np.int64)
        attention_mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, tokens in enumerate(batch):
            input_ids[row, : tokens.count] = tokens.ids
            attention_mask[row, : tokens.count] = 1
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
        return self._session.run(None, feeds)[0].astype(np.float32, copy=False)

    def embed(self, texts: list[str]) -> np.ndarray:
        """Tokenize and run in one go (tests, benchmarks)."""
        return self.run(self.tokenize(texts))
