"""`openai`: any OpenAI-compatible `/v1/chat/completions` endpoint, streamed over SSE."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from typing import Any

import httpx

from cache_svc.entry import Usage
from cache_svc.llm.base import Delta, Done, LLMRequest, UpstreamError
from semcache.metadata import UpstreamFailure


class OpenAIBackend:
    """Streams chat completions with httpx; the API key comes from the environment.

    An HTTP error, a refused connection, a timeout or a stream that breaks before its
    finish_reason raises UpstreamError, so nothing partial is ever cached.
    """

    name = "openai"

    def __init__(
        self, base_url: str, *, api_key_env: str = "OPENAI_API_KEY", timeout: float = 60.0
    ) -> None:
        headers = {"content-type": "application/json"}
        if key := os.environ.get(api_key_env):
            headers["authorization"] = f"Bearer {key}"
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=5.0),
        )

    def body(self, request: LLMRequest) -> dict[str, Any]:
        if request.raw_request_json:
            body = json.loads(request.raw_request_json)
        else:
            messages = []
            if request.system_prompt:
                messages.append({"role": "system", "content": request.system_prompt})
            messages += [{"role": t.role, "content": t.content} for t in request.history]
            messages.append({"role": "user", "content": request.prompt})
            body = {"model": request.model, "messages": messages, **request.params}
        # Always streamed upstream: the cache stores the chunks for faithful replay.
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
        return body

    async def stream(self, request: LLMRequest) -> AsyncIterator[Delta | Done]:
        finish_reason, usage = "", Usage()
        try:
            async with self._client.stream(
                "POST", "/chat/completions", json=self.body(request)
            ) as response:
                if response.status_code >= 400:
                    raise await _upstream_error(response)
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    chunk = json.loads(data)
                    if not isinstance(chunk, dict):
                        raise UpstreamError(0, f"unexpected stream event: {data[:200]}")
                    if isinstance(u := chunk.get("usage"), dict):
                        usage = Usage(
                            *(
                                int(u.get(k) or 0)
                                for k in ("prompt_tokens", "completion_tokens", "total_tokens")
                            )
                        )
                    for choice in chunk.get("choices") or []:
                        if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                            continue  # one answer is cached: the first choice's
                        delta = choice.get("delta") or {}
                        if isinstance(text := delta.get("content"), str) and text:
                            yield Delta(text)
                        finish_reason = str(choice.get("finish_reason") or finish_reason)
        except httpx.TimeoutException as e:
            raise UpstreamError(0, f"timed out: {e!r}") from e
        except (httpx.HTTPError, ValueError, TypeError, AttributeError) as e:
            raise UpstreamError(0, f"{type(e).__name__}: {e}") from e
        if not finish_reason:
            raise UpstreamError(0, "the stream ended before a finish_reason")
        yield Done(finish_reason, usage)

    async def aclose(self) -> None:
        await self._client.aclose()


async def _upstream_error(response: httpx.Response) -> UpstreamError:
    """The upstream's error as it sent it: its status, Retry-After, and from an OpenAI-style
    body the message, type, code and param (a body of another shape: its first 500 bytes)."""
    body = (await response.aread()).decode("utf-8", "replace")
    try:
        error = json.loads(body)["error"]
        message = str(error["message"])
    except (ValueError, KeyError, TypeError):
        error, message = {}, body[:500] or response.reason_phrase

    def field(name: str) -> str:
        value = error.get(name)
        return "" if value is None else str(value)[:200]

    failure = UpstreamFailure(
        response.status_code,
        type=field("type"),
        code=field("code"),
        param=field("param"),
        retry_after=response.headers.get("retry-after", "")[:100],
    )
    return UpstreamError(failure, message)
