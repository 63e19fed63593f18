"""Request validation shared by the router and the shards.

Each check raises `InvalidRequestError` with a message that names the field, what is wrong and
the limit; servicers turn it into INVALID_ARGUMENT.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import grpc

from semcache import keys
from semcache.runtime.status import CallError
from semcache.v1 import cache_pb2

#: The Embedder contract's default limit on one text (`--max-text-bytes`, embedder.proto):
#: what a shard sends it at most. The model reads only its first 256 tokens, which real text
#: spends long before 32 KiB, so the vector of the clipped text is the vector of the whole.
EMBED_TEXT_MAX_BYTES = 32 * 1024


class InvalidRequestError(CallError, ValueError):
    """The caller sent something the cache cannot accept: a `CallError` (INVALID_ARGUMENT)
    that ends the call as it is, wherever it is raised."""

    def __init__(self, message: str) -> None:
        super().__init__(grpc.StatusCode.INVALID_ARGUMENT, message)


@dataclass(frozen=True, slots=True)
class RequestLimits:
    max_prompt_bytes: int = 32 * 1024
    max_system_prompt_bytes: int = 64 * 1024
    max_history_turns: int = 256
    max_history_bytes: int = 256 * 1024
    max_name_bytes: int = 256  # tenant, model, category
    max_answer_bytes: int = 1024 * 1024
    max_params_bytes: int = 64 * 1024  # stop sequences and extra parameters together
    max_ttl_seconds: int = 10 * 365 * 24 * 3600  # Redis expiry times must stay representable


def _size(text: str) -> int:
    return len(text.encode("utf-8"))


def clipped(text: str, max_bytes: int) -> str:
    """`text` cut to at most `max_bytes` of UTF-8, never inside a character (the limits
    count bytes, not characters)."""
    return text.encode("utf-8")[:max_bytes].decode("utf-8", errors="ignore")


def _check_name(field: str, value: str, limits: RequestLimits) -> None:
    if _size(value) > limits.max_name_bytes:
        raise InvalidRequestError(f"{field}: {_size(value)} bytes, limit {limits.max_name_bytes}")
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        raise InvalidRequestError(f"{field}: must not contain whitespace or control characters")


def check_prompt(prompt: str, limits: RequestLimits) -> None:
    if not prompt.strip():
        raise InvalidRequestError("prompt: empty; the last user turn is required")
    _check_prompt_size(prompt, limits)


def _check_prompt_size(prompt: str, limits: RequestLimits) -> None:
    if _size(prompt) > limits.max_prompt_bytes:
        raise InvalidRequestError(f"prompt: {_size(prompt)} bytes, limit {limits.max_prompt_bytes}")


def check_sizes(scope: cache_pb2.Scope, prompt: str, limits: RequestLimits) -> None:
    """The size limits alone: what a front can route around (straight upstream) instead of
    refusing."""
    _check_prompt_size(prompt, limits)
    _check_scope_sizes(scope, limits)


def check_scope(scope: cache_pb2.Scope, limits: RequestLimits) -> None:
    _check_name("scope.tenant", scope.tenant, limits)
    _check_scope_sizes(scope, limits)
    params = scope.params
    for name in keys.FLOAT_PARAMS:
        if params.HasField(name) and not math.isfinite(getattr(params, name)):
            raise InvalidRequestError(f"scope.params.{name}: must be a finite number")
    if params.HasField("temperature") and params.temperature < 0:
        raise InvalidRequestError(
            f"scope.params.temperature: must be >= 0, got {params.temperature}"
        )
    if params.HasField("top_p") and not 0 <= params.top_p <= 1:
        raise InvalidRequestError(f"scope.params.top_p: must be in [0, 1], got {params.top_p}")


def _check_scope_sizes(scope: cache_pb2.Scope, limits: RequestLimits) -> None:
    if _size(scope.model) > limits.max_name_bytes:
        raise InvalidRequestError(
            f"scope.model: {_size(scope.model)} bytes, limit {limits.max_name_bytes}"
        )
    if _size(scope.system_prompt) > limits.max_system_prompt_bytes:
        raise InvalidRequestError(
            f"scope.system_prompt: {_size(scope.system_prompt)} bytes, "
            f"limit {limits.max_system_prompt_bytes}"
        )
    if len(scope.history) > limits.max_history_turns:
        raise InvalidRequestError(
            f"scope.history: {len(scope.history)} turns, limit {limits.max_history_turns}"
        )
    history_bytes = sum(_size(t.content) + _size(t.role) for t in scope.history)
    if history_bytes > limits.max_history_bytes:
        raise InvalidRequestError(
            f"scope.history: {history_bytes} bytes, limit {limits.max_history_bytes}"
        )
    params = scope.params
    params_bytes = sum(_size(s) for s in params.stop) + sum(
        _size(k) + _size(v) for k, v in params.extra.items()
    )
    if params_bytes > limits.max_params_bytes:
        raise InvalidRequestError(
            f"scope.params: stop and extra are {params_bytes} bytes, "
            f"limit {limits.max_params_bytes}"
        )


def _json_value(field: str, text: str) -> object:
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as e:
        raise InvalidRequestError(f"{field}: not valid JSON ({type(e).__name__})") from None


def check_min_similarity(request: cache_pb2.LookupRequest | cache_pb2.CompleteRequest) -> None:
    if not request.HasField("min_similarity"):
        return
    value = request.min_similarity
    if not (math.isfinite(value) and -1 <= value <= 1):
        raise InvalidRequestError(
            f"min_similarity: must be a cosine similarity in [-1, 1], got {value} "
            "(it is a similarity, not a distance)"
        )


def _check_ttl(field: str, value: int, limits: RequestLimits) -> None:
    if not 0 < value <= limits.max_ttl_seconds:
        raise InvalidRequestError(f"{field}: must be in (0, {limits.max_ttl_seconds}], got {value}")


def check_cache_control(control: cache_pb2.CacheControl, limits: RequestLimits) -> None:
    if control.HasField("max_age_seconds") and control.max_age_seconds < 0:
        raise InvalidRequestError(
            f"cache_control.max_age_seconds: must be >= 0, got {control.max_age_seconds}"
        )
    if control.HasField("ttl_seconds"):
        _check_ttl("cache_control.ttl_seconds", control.ttl_seconds, limits)


def check_category(category: str, limits: RequestLimits) -> None:
    _check_name("category", category, limits)


def check_entry_id(entry_id: str) -> str:
    """The entry's namespace key."""
    if not entry_id:
        raise InvalidRequestError("entry_id: required")
    try:
        return keys.namespace_of(entry_id)
    except ValueError as e:
        raise InvalidRequestError(str(e)) from None


def check_lookup(
    request: cache_pb2.LookupRequest | cache_pb2.CompleteRequest, limits: RequestLimits
) -> None:
    """Everything a Lookup or Complete request must satisfy."""
    check_scope(request.scope, limits)
    check_prompt(request.prompt, limits)
    check_category(request.category, limits)
    check_min_similarity(request)
    check_cache_control(request.cache_control, limits)
    raw = getattr(request, "upstream_request_json", "")
    if raw and not isinstance(_json_value("upstream_request_json", raw), dict):
        raise InvalidRequestError("upstream_request_json: must be a JSON object")


def check_store(request: cache_pb2.StoreRequest, limits: RequestLimits) -> None:
    check_scope(request.scope, limits)
    check_prompt(request.prompt, limits)
    check_category(request.category, limits)
    answer = request.answer
    size = _size(answer.text) + sum(_size(c) for c in answer.chunks)
    if not answer.text and not answer.chunks:
        raise InvalidRequestError("answer: empty; give answer.text or answer.chunks")
    if size > limits.max_answer_bytes:
        raise InvalidRequestError(f"answer: {size} bytes, limit {limits.max_answer_bytes}")
    if answer.chunks and answer.text and "".join(answer.chunks) != answer.text:
        raise InvalidRequestError("answer: text and chunks disagree; chunks must join to text")
    if request.HasField("ttl_seconds"):
        _check_ttl("ttl_seconds", request.ttl_seconds, limits)


_Targets = cache_pb2.InvalidateRequest
_Verdicts = cache_pb2.FeedbackRequest


def check_invalidate(request: cache_pb2.InvalidateRequest, limits: RequestLimits) -> int:
    """What the Invalidate removes: its target (`InvalidateRequest.Target`), ENTRY when only
    `entry_id` is set; for ENTRY, `check_entry_id` gives the entry's namespace."""
    check_scope(request.scope, limits)
    target = request.target
    if target == _Targets.TARGET_UNSPECIFIED:
        if not request.entry_id:
            raise InvalidRequestError("target: set target (ENTRY, NAMESPACE or TENANT) or entry_id")
        return _Targets.TARGET_ENTRY
    if target not in (_Targets.TARGET_ENTRY, _Targets.TARGET_NAMESPACE, _Targets.TARGET_TENANT):
        # An enum value from a newer contract, or a number a hand-written request made up.
        raise InvalidRequestError(
            f"target: unknown value {target}; ENTRY (1), NAMESPACE (2) or TENANT (3)"
        )
    return target


def check_feedback(request: cache_pb2.FeedbackRequest, limits: RequestLimits) -> str:
    """The namespace of the entry the feedback is about."""
    check_scope(request.scope, limits)
    if request.verdict not in (_Verdicts.VERDICT_WRONG_HIT, _Verdicts.VERDICT_CORRECT_HIT):
        raise InvalidRequestError(
            f"verdict: WRONG_HIT (1) or CORRECT_HIT (2) required, got {request.verdict}"
        )
    return check_entry_id(request.entry_id)


def check_export(request: cache_pb2.ExportRequest, limits: RequestLimits) -> None:
    _check_name("tenant", request.tenant, limits)
    if request.namespace and not keys.is_namespace_key(request.namespace):
        raise InvalidRequestError(
            f"namespace: {request.namespace[:80]!r} is not a namespace key (32 lowercase hex)"
        )
