"""OpenAI chat completions <-> semcache: the pure mapping, no I/O.

A request's system (and developer) messages become the scope's system prompt, the turns
before the last user message its history, the model and every parameter that can change the
answer its generation parameters; the last user message is the prompt. The request itself
travels intact to the shard, which sends it upstream on a miss. Content given as a list of
parts works when every part is text; any other part (an image, audio) bypasses the cache:
the call goes upstream and nothing is stored.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from semcache import keys
from semcache.conversation import LAST_MESSAGE_EXTRA, MessagesError, split_messages
from semcache.runtime import validation
from semcache.runtime.validation import RequestLimits
from semcache.v1 import cache_pb2

#: Request fields that never change the answer, or have a field of their own (the
#: GenerationParams fields; max_completion_tokens is max_tokens), so they stay out of `extra`.
_NOT_ANSWER = {
    "model",
    "messages",
    "stream",
    "stream_options",
    "user",
    "metadata",
    "store",
    "max_completion_tokens",
    "stop",
    "service_tier",
    "prompt_cache_key",
    "safety_identifier",
    *keys.OPTIONAL_PARAMS,
}
#: The limits `parse` checks unless the front passes the router's own.
_DEFAULT_LIMITS = RequestLimits()


class ChatRequestError(ValueError):
    """The body is not a chat completion request we can serve; the message says why."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True, slots=True)
class ChatCall:
    request: cache_pb2.CompleteRequest
    model: str
    stream: bool
    include_usage: bool
    bypass: bool  # non-text content: straight upstream, not stored


def _integer(value: Any) -> int | None:
    """A JSON integer (1 and 1.0 alike, as JSON Schema reads them), or None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    return value


def _params(body: dict[str, Any]) -> cache_pb2.GenerationParams:
    params = cache_pb2.GenerationParams()
    for name in keys.FLOAT_PARAMS:
        value = body.get(name)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ChatRequestError(f"{name} must be a number", name)
            setattr(params, name, float(value))
    for name in ("max_tokens", "max_completion_tokens"):  # the second wins when both are set
        if body.get(name) is not None:
            tokens = _integer(body[name])
            if tokens is None or not 0 < tokens < 2**32:
                raise ChatRequestError(f"{name} must be a positive integer", name)
            params.max_tokens = tokens
    if body.get("seed") is not None:
        seed = _integer(body["seed"])
        if seed is None or abs(seed) >= 2**63:
            raise ChatRequestError("seed must be an integer", "seed")
        params.seed = seed
    stop = body.get("stop")
    if stop is not None:
        stops = [stop] if isinstance(stop, str) else stop
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise ChatRequestError("stop must be a string or a list of strings", "stop")
        params.stop.extend(stops)
    # Everything else that shapes the answer (tools, response_format, n, logit_bias, ...)
    # keys the scope too, as canonical JSON.
    for name, value in body.items():
        if name not in _NOT_ANSWER and value is not None:
            params.extra[name] = keys.canonical_json(value)
    return params


def _unsupported(body: dict[str, Any]) -> None:
    """Refuses what the cache cannot answer faithfully: one text answer per request (and
    the fields that say otherwise, in a shape OpenAI would refuse too)."""
    if body.get("n") is not None and _integer(body["n"]) != 1:
        raise ChatRequestError("n > 1 is not supported by the semcache front", "n")
    for name in ("tools", "functions"):
        if body.get(name) is not None and not isinstance(body[name], list):
            raise ChatRequestError(f"{name} must be a list", name)
    tools = body.get("tools") or body.get("functions")
    if tools and body.get("tool_choice", "auto") != "none":
        raise ChatRequestError(
            "tool calls are not supported by the semcache front: call the upstream directly",
            "tools",
        )
    logprobs = body.get("logprobs")
    if logprobs is not None and logprobs is not False:
        raise ChatRequestError("logprobs are not supported by the semcache front", "logprobs")
    if "audio" in (body.get("modalities") or []) or body.get("audio"):
        raise ChatRequestError("audio output is not supported by the semcache front", "modalities")


def _over_limits(scope: cache_pb2.Scope, prompt: str, limits: RequestLimits) -> bool:
    try:
        validation.check_sizes(scope, prompt, limits)
    except validation.InvalidRequestError:
        return True
    return False


def parse(
    body: Any,
    tenant: str,
    *,
    no_cache: bool = False,
    no_store: bool = False,
    limits: RequestLimits = _DEFAULT_LIMITS,
) -> ChatCall:
    """The semcache call for a chat completion request body (parsed JSON).

    Requests the cache cannot key (non-text content, a conversation that ends with a tool
    result, beyond the cache's size limits: the router's `limits`) bypass it: they go
    upstream as sent, nothing is looked up or stored.
    """
    try:
        return _parse(body, tenant, no_cache=no_cache, no_store=no_store, limits=limits)
    except UnicodeEncodeError:  # JSON may escape a lone surrogate; protobuf strings refuse it
        raise ChatRequestError(
            "text must be valid Unicode: a lone surrogate (\\ud800-\\udfff) is not text"
        ) from None


def _parse(
    body: Any, tenant: str, *, no_cache: bool, no_store: bool, limits: RequestLimits
) -> ChatCall:
    if not isinstance(body, dict):
        raise ChatRequestError("the body must be a JSON object")
    _unsupported(body)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ChatRequestError("model is required (a string)", "model")
    try:
        conversation = split_messages(body.get("messages"))
    except MessagesError as e:
        raise ChatRequestError(str(e), e.where) from None
    prompt, bypass = conversation.prompt, not conversation.keyable
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise ChatRequestError("stream must be a boolean", "stream")
    options = body.get("stream_options")
    options = {} if options is None else options
    if not isinstance(options, dict):
        raise ChatRequestError("stream_options must be an object", "stream_options")
    if not isinstance(options.get("include_usage", False), bool):
        raise ChatRequestError("stream_options.include_usage must be a boolean", "stream_options")
    params = _params(body)
    if conversation.last_message_fields:  # e.g. the user's name
        params.extra[LAST_MESSAGE_EXTRA] = keys.canonical_json(conversation.last_message_fields)
    scope = cache_pb2.Scope(
        tenant=tenant,
        model=model,
        system_prompt=conversation.system,
        params=params,
        history=[cache_pb2.Turn(role=r, content=c) for r, c in conversation.history],
    )
    if bypass or _over_limits(scope, prompt, limits):
        # Upstream as sent (the body travels intact); a minimal scope passes the router's
        # validation, and nothing is looked up, shared in flight or stored.
        bypass = True
        scope = cache_pb2.Scope(
            tenant=tenant, model=validation.clipped(model, limits.max_name_bytes)
        )
        # What the router sees of it (nothing is keyed or stored): within its limit.
        size = min(1024, limits.max_prompt_bytes)
        head = validation.clipped(prompt.strip(), size)
        prompt = head if head.strip() else validation.clipped("(no text)", size)
    control = cache_pb2.CacheControl(no_cache=no_cache or bypass, no_store=no_store or bypass)
    request = cache_pb2.CompleteRequest(
        scope=scope, prompt=prompt, cache_control=control, upstream_request_json=json.dumps(body)
    )
    return ChatCall(request, model, stream, bool(options.get("include_usage")), bypass)


def status_header(call: ChatCall, info: cache_pb2.CacheInfo) -> str:
    if call.bypass or info.status == cache_pb2.CACHE_STATUS_BYPASS:
        return "bypass"
    return "hit" if info.status == cache_pb2.CACHE_STATUS_HIT else "miss"


def completion_id() -> str:
    """Unique per response, as OpenAI's are (the entry is in `x-semcache-entry`)."""
    return f"chatcmpl-{uuid.uuid4().hex}"


def usage(answer_usage: cache_pb2.Usage, hit: bool) -> dict[str, Any]:
    """The answer's original usage; on a hit, its prompt tokens are marked cached."""
    out: dict[str, Any] = {
        "prompt_tokens": answer_usage.prompt_tokens,
        "completion_tokens": answer_usage.completion_tokens,
        "total_tokens": answer_usage.total_tokens,
    }
    if hit:
        out["prompt_tokens_details"] = {"cached_tokens": answer_usage.prompt_tokens}
    return out


def completion(call: ChatCall, response: cache_pb2.CompleteResponse) -> dict[str, Any]:
    hit = response.cache.status == cache_pb2.CACHE_STATUS_HIT
    return {
        "id": completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": call.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": response.answer.text, "refusal": None},
                "finish_reason": response.answer.finish_reason or "stop",
                "logprobs": None,
            }
        ],
        "usage": usage(response.answer.usage, hit),
    }


def chunk(
    call: ChatCall,
    chunk_id: str,
    created: int,
    delta: dict[str, Any],
    finish_reason: str | None = None,
) -> dict[str, Any]:
    return {
        "id": chunk_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": call.model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
    }


def error(
    message: str, kind: str, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    """An error body in OpenAI's format."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}
