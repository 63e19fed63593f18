"""The one interface every LLM backend implements: a stream of deltas ending in `Done`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

from cache_svc.entry import Usage
from semcache.metadata import UpstreamFailure


@dataclass(frozen=True, slots=True)
class Turn:
    role: str
    content: str


@dataclass(frozen=True, slots=True)
class LLMRequest:
    model: str
    prompt: str
    system_prompt: str = ""
    history: tuple[Turn, ...] = ()
    #: Generation parameters as the OpenAI API names them (temperature, top_p, ...).
    params: dict[str, object] = field(default_factory=dict)
    #: The caller's own request body (JSON), forwarded as-is by backends that can.
    raw_request_json: str = ""


@dataclass(frozen=True, slots=True)
class Delta:
    text: str


@dataclass(frozen=True, slots=True)
class Done:
    finish_reason: str = "stop"
    usage: Usage = field(default_factory=Usage)


class UpstreamError(Exception):
    """The LLM answered with an error (or not at all). Never cached.

    `failure.status` is the upstream HTTP status (0 when there was no answer: connection
    refused, timeout, a broken stream); `failure` also keeps its error's type, code and
    param and its Retry-After, which the caller gets as the upstream sent them.
    """

    def __init__(self, status: int | UpstreamFailure, message: str) -> None:
        failure = status if isinstance(status, UpstreamFailure) else UpstreamFailure(status)
        super().__init__(f"upstream {failure.status or 'unreachable'}: {message}")
        self.failure = failure
        self.message = message

    @property
    def status(self) -> int:
        return self.failure.status


class LLMBackend(Protocol):
    name: str

    def stream(self, request: LLMRequest) -> AsyncIterator[Delta | Done]:
        """Yields the answer's deltas, then exactly one `Done`. Raises UpstreamError."""
        ...

    async def aclose(self) -> None: ...
