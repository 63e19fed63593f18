"""LLM backends: what a shard calls on a read-through miss."""

from cache_svc.llm.base import Delta, Done, LLMBackend, LLMRequest, UpstreamError
from cache_svc.llm.echo import EchoBackend
from cache_svc.llm.openai import OpenAIBackend

__all__ = [
    "Delta",
    "Done",
    "EchoBackend",
    "LLMBackend",
    "LLMRequest",
    "OpenAIBackend",
    "UpstreamError",
]
