"""The one derivation of namespace keys, prompt keys and entry ids (router and shards).

A namespace is everything besides the last user turn that decides the answer: tenant,
model, system prompt, answer-changing parameters and earlier turns. Its key is a blake2b
hash of a canonical JSON form of those fields, so it is the same in every process and on
every machine (never Python's `hash()`, which is salted per process).
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import unicodedata
from typing import Any

from semcache.v1 import cache_pb2

DEFAULT_TENANT = "default"
KEY_HEX_CHARS = 32  # 128-bit keys
_ENTRY_ID = re.compile(r"^([0-9a-f]{32})\.([0-9a-f]{16})$")
_NAMESPACE_KEY = re.compile(r"[0-9a-f]{32}")
#: The generation parameters with a field of their own that may be unset (temperature,
#: top_p, ...), from the proto itself.
OPTIONAL_PARAMS = tuple(
    f.name
    for f in cache_pb2.GenerationParams.DESCRIPTOR.fields
    if f.has_presence and f.message_type is None
)
#: Those of them that are real numbers (temperature, top_p, the penalties).
FLOAT_PARAMS = tuple(
    f.name
    for f in cache_pb2.GenerationParams.DESCRIPTOR.fields
    if f.name in OPTIONAL_PARAMS and f.cpp_type == f.CPPTYPE_DOUBLE
)


def tenant_of(scope: cache_pb2.Scope) -> str:
    return scope.tenant or DEFAULT_TENANT


def canonical_json(value: Any) -> str:
    """The one canonical JSON text of a value: keys sorted, no spaces, UTF-8 as is. How
    every client keys a generation parameter without a field of its own
    (`GenerationParams.extra`: a string too, so "high" is `"high"` and 1 differs from "1"),
    and how the OpenAI front keys a turn's other fields."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _canonical_params(params: cache_pb2.GenerationParams) -> dict[str, Any]:
    canonical: dict[str, Any] = {
        name: getattr(params, name) for name in OPTIONAL_PARAMS if params.HasField(name)
    }
    if params.stop:
        canonical["stop"] = list(params.stop)
    if params.extra:
        canonical["extra"] = dict(sorted(params.extra.items()))
    return canonical


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=KEY_HEX_CHARS // 2).hexdigest()


def namespace_key(scope: cache_pb2.Scope) -> str:
    """The namespace key (32 hex chars) of a scope. Unset and default values are equal."""
    canonical = {
        "v": 1,
        "tenant": tenant_of(scope),
        "model": scope.model,
        "system": scope.system_prompt,
        "params": _canonical_params(scope.params),
        "history": [[turn.role, turn.content] for turn in scope.history],
    }
    return _digest(canonical_json(canonical))


def normalize_prompt(prompt: str) -> str:
    """The form exact matching compares: Unicode NFKC, case-folded, whitespace collapsed,
    trailing sentence punctuation dropped. Nothing that can change meaning (digits, signs,
    word order, inner punctuation) is touched."""
    text = unicodedata.normalize("NFKC", prompt).casefold()
    text = " ".join(text.split())
    return text.rstrip(" ?!.。？！")


def prompt_key(prompt: str) -> str:
    """Exact-match key of a prompt within a namespace."""
    return _digest(normalize_prompt(prompt))


def new_entry_id(namespace: str) -> str:
    """`<namespace>.<16 random hex>`: the namespace travels in the id, so an id alone routes."""
    return f"{namespace}.{secrets.token_hex(8)}"


def namespace_of(entry_id: str) -> str:
    """The namespace key inside an entry id; ValueError when the id is malformed."""
    match = _ENTRY_ID.match(entry_id)
    if match is None:
        raise ValueError(
            f"entry_id: {entry_id[:80]!r} is not an entry id (<32 hex namespace>.<16 hex>)"
        )
    return match.group(1)


def is_namespace_key(text: str) -> bool:
    """Whether `text` has a namespace key's form (32 lowercase hex chars)."""
    return _NAMESPACE_KEY.fullmatch(text) is not None
