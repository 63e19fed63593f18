"""`echo`: a deterministic stand-in LLM for demos and tests (no network)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

from cache_svc.entry import Usage
from cache_svc.llm.base import Delta, Done, LLMRequest


class EchoBackend:
    """Answers `echo[<model>]: <prompt>` after `delay` seconds, streamed word by word.

    The same request always gets the same answer, so tests can tell which prompt an answer
    was made for. `calls` counts upstream calls (what single-flight saves).
    """

    name = "echo"

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.calls = 0

    @staticmethod
    def answer_for(request: LLMRequest) -> str:
        scope = hashlib.blake2b(
            f"{request.system_prompt}|{request.history}|{sorted(request.params.items())}".encode(),
            digest_size=3,
        ).hexdigest()
        return f"echo[{request.model or 'default'}/{scope}]: {request.prompt}"

    async def stream(self, request: LLMRequest) -> AsyncIterator[Delta | Done]:
        self.calls += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        text = self.answer_for(request)
        words = text.split(" ")
        for i, word in enumerate(words):
            yield Delta(word if i == len(words) - 1 else word + " ")
        prompt_tokens = len(request.prompt.split())
        yield Done("stop", Usage(prompt_tokens, len(words), prompt_tokens + len(words)))

    async def aclose(self) -> None:
        return None
