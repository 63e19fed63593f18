"""Building requests from the SDK's keywords: the scope, generation parameters and cache
control. Parameter names come from the proto (`semcache.keys`), extras are keyed as the
OpenAI front keys them, so one request is one namespace however it arrives."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypedDict, Unpack

from semcache import keys
from semcache.conversation import LAST_MESSAGE_EXTRA, split_messages
from semcache.v1 import cache_pb2


class ScopeArgs(TypedDict, total=False):
    """The scope keywords every call takes: two calls can share an answer only when these
    are equal.

    `history` holds the turns before the prompt, oldest first, as (role, content) pairs or
    {"role": ..., "content": ...} dicts. `params` holds the answer-changing generation
    parameters: temperature, top_p, max_tokens, seed, stop (a string or a list),
    presence_penalty, frequency_penalty, and `extra` for any other (a dict: each value is
    keyed as canonical JSON, strings included, as the OpenAI front keys the same request's
    other fields: `{"reasoning_effort": "high", "response_format": {...}}`).
    """

    tenant: str
    model: str
    system: str
    history: Iterable[tuple[str, str] | Mapping[str, str]]
    params: Mapping[str, Any]


def params_message(params: Mapping[str, Any]) -> cache_pb2.GenerationParams:
    unknown = sorted(set(params) - {*keys.OPTIONAL_PARAMS, "stop", "extra"})
    if unknown:
        raise ValueError(
            f"params: unknown {', '.join(unknown)}; put other answer-changing "
            "parameters under 'extra'"
        )
    message = cache_pb2.GenerationParams(
        **{name: params[name] for name in keys.OPTIONAL_PARAMS if params.get(name) is not None}
    )
    stop = params.get("stop") or ()
    message.stop.extend([stop] if isinstance(stop, str) else stop)
    for key, value in (params.get("extra") or {}).items():
        message.extra[key] = keys.canonical_json(value)  # as the OpenAI front keys it
    return message


def turn_message(turn: tuple[str, str] | Mapping[str, str]) -> cache_pb2.Turn:
    if isinstance(turn, Mapping):
        return cache_pb2.Turn(role=turn["role"], content=turn["content"])
    role, content = turn
    return cache_pb2.Turn(role=role, content=content)


def scope_message(
    default_tenant: str,
    *,
    tenant: str | None = None,
    model: str = "",
    system: str = "",
    history: Iterable[tuple[str, str] | Mapping[str, str]] = (),
    params: Mapping[str, Any] | None = None,
) -> cache_pb2.Scope:
    return cache_pb2.Scope(
        tenant=default_tenant if tenant is None else tenant,
        model=model,
        system_prompt=system,
        params=params_message(params or {}),
        history=[turn_message(t) for t in history],
    )


def control_message(
    no_cache: bool = False,
    no_store: bool = False,
    max_age: int | None = None,
    ttl: int | None = None,
) -> cache_pb2.CacheControl:
    control = cache_pb2.CacheControl(no_cache=no_cache, no_store=no_store)
    if max_age is not None:
        control.max_age_seconds = max_age
    if ttl is not None:
        control.ttl_seconds = ttl
    return control


def scope_from_messages(
    messages: list[Mapping[str, Any]], **scope: Unpack[ScopeArgs]
) -> tuple[str, ScopeArgs]:
    """The prompt and scope keywords of an OpenAI-style `messages` list, mapped exactly as
    the HTTP front maps a chat completion (`semcache.conversation`), so both find the same
    entries:

        prompt, scope = scope_from_messages(messages, model="gpt-4o", params={"temperature": 0})
        done = await cache.complete(prompt, **scope)

    `scope` adds the other keywords (`model`, `tenant`, `params`: the request's
    top-level generation fields; the leading system messages win over `system`). ValueError
    when the messages are malformed or cannot be cached (a non-text part, a last message
    that is not a user's): the front sends those upstream uncached."""
    conversation = split_messages(messages)
    if not conversation.keyable:
        raise ValueError(
            "messages: cannot be cached (non-text content, or the last message is not a "
            "user's with text)"
        )
    keywords: ScopeArgs = {**scope, "history": conversation.history}
    if conversation.system:
        keywords["system"] = conversation.system
    if conversation.last_message_fields:
        params = dict(scope.get("params") or {})
        params["extra"] = {
            **(params.get("extra") or {}),
            LAST_MESSAGE_EXTRA: conversation.last_message_fields,
        }
        keywords["params"] = params
    return conversation.prompt, keywords
