"""A cached answer and its metadata, and its form in Redis."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import orjson


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Answer:
    text: str
    #: The chunks it was streamed in (empty when it was not streamed).
    chunks: tuple[str, ...] = ()
    finish_reason: str = "stop"
    usage: Usage = field(default_factory=Usage)
    metadata: dict[str, str] = field(default_factory=dict)

    def replay_chunks(self, size: int = 24) -> list[str]:
        """The stored chunks, or the text cut at word boundaries into pieces of ~`size` chars."""
        if self.chunks:
            return list(self.chunks)
        pieces, current = [], ""
        for word in self.text.split(" "):
            candidate = f"{current} {word}" if current else word
            if len(candidate) > size and current:
                pieces.append(current + " ")
                current = word
            else:
                current = candidate
        if current:
            pieces.append(current)
        return pieces or [""]


@dataclass(slots=True)
class Entry:
    id: str
    namespace: str
    tenant: str
    prompt: str
    prompt_key: str
    answer: Answer
    category: str
    created: float  # unix seconds
    expires: float  # unix seconds
    vector: np.ndarray | None  # float32, L2-normalised; None when stored without embedding
    hits: int = 0
    #: The id of the model that made `vector` ("" for entries stored before ids were kept:
    #: comparable with nothing, re-embedded like any vector of an old model).
    model: str = ""

    def expired(self, now: float) -> bool:
        return now >= self.expires

    @property
    def size_bytes(self) -> int:
        """Approximate memory held: texts plus the vector (what capacity limits count)."""
        text = len(self.prompt) + len(self.answer.text) + sum(len(c) for c in self.answer.chunks)
        return text + (self.vector.nbytes if self.vector is not None else 0) + 200

    def to_redis(self) -> dict[str, bytes | str]:
        answer = {
            "text": self.answer.text,
            "chunks": list(self.answer.chunks),
            "finish_reason": self.answer.finish_reason,
            "usage": [
                self.answer.usage.prompt_tokens,
                self.answer.usage.completion_tokens,
                self.answer.usage.total_tokens,
            ],
            "metadata": self.answer.metadata,
        }
        fields: dict[str, bytes | str] = {
            "id": self.id,
            "tenant": self.tenant,
            "prompt": self.prompt,
            "prompt_key": self.prompt_key,
            "answer": json.dumps(answer, ensure_ascii=False),
            "category": self.category,
            "created": repr(self.created),
            "expires": repr(self.expires),
            "hits": str(self.hits),
        }
        if self.vector is not None:
            fields["vector"] = self.vector.astype("<f4", copy=False).tobytes()
            fields["model"] = self.model
        return fields

    @classmethod
    def from_redis(cls, namespace: str, fields: dict[bytes, bytes]) -> Entry:
        answer = orjson.loads(fields[b"answer"])
        vector = fields.get(b"vector")
        return cls(
            id=fields[b"id"].decode(),
            namespace=namespace,
            tenant=fields[b"tenant"].decode(),
            prompt=fields[b"prompt"].decode(),
            prompt_key=fields[b"prompt_key"].decode(),
            answer=Answer(
                text=answer["text"],
                chunks=tuple(answer["chunks"]),
                finish_reason=answer["finish_reason"],
                usage=Usage(*answer["usage"]),
                metadata=answer["metadata"],
            ),
            category=fields[b"category"].decode(),
            created=float(fields[b"created"]),
            expires=float(fields[b"expires"]),
            hits=int(fields.get(b"hits", b"0")),
            vector=np.frombuffer(vector, dtype="<f4").copy() if vector else None,
            model=fields.get(b"model", b"").decode(),
        )
