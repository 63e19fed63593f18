"""The bulk entry format of `semcache import` and `semcache export`: one JSON object per
entry (a line of JSONL), the same both ways, so an export imports again as it was.

    {"tenant": "acme", "model": "gpt-4o", "system_prompt": "Be brief.",
     "params": {"temperature": 0.2}, "history": [{"role": "user", "content": "Hi"}],
     "prompt": "How do I reset my password?",
     "answer": "Open Settings, then ...",          (or an object: text, chunks,
                                                    finish_reason, usage, metadata)
     "category": "factual", "ttl_seconds": 86400, "metadata": {"source": "faq"}}

`prompt` and `answer` are required; every scope field is optional (as in `Scope`: tenant
"default" when absent, or the client's tenant). `metadata` joins the answer's metadata.
An export adds `entry_id`, `namespace`, `created_unix_seconds` and `hits`, which import
ignores, except `namespace`: when given, the scope must hash to it, so an entry whose
scope was not exported whole is refused rather than stored under another scope.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.protobuf import json_format

from semcache import keys
from semcache.v1 import cache_pb2

#: The scope's fields, at the top level of an entry.
SCOPE_FIELDS = tuple(f.name for f in cache_pb2.Scope.DESCRIPTOR.fields)
#: What an export adds for the reader; import checks `namespace` and ignores the rest.
INFO_FIELDS = ("entry_id", "namespace", "created_unix_seconds", "hits")
FIELDS = frozenset(
    (*SCOPE_FIELDS, "prompt", "answer", "category", "ttl_seconds", "metadata", *INFO_FIELDS)
)


class EntryFormatError(ValueError):
    """An entry that is not in the bulk format; the message says which field and why."""


def store_request(entry: Any, tenant: str = "") -> cache_pb2.StoreRequest:
    """The Store request an entry stands for (`tenant` when it names none). Raises
    EntryFormatError. What the server checks (sizes, ranges) it checks again."""
    if not isinstance(entry, Mapping):
        raise EntryFormatError(f"an entry is a JSON object, not {type(entry).__name__}")
    if unknown := sorted(set(entry) - FIELDS):
        raise EntryFormatError(f"unknown field(s) {', '.join(unknown)}")
    prompt = entry.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise EntryFormatError("prompt: a non-empty string is required")
    request = cache_pb2.StoreRequest(prompt=prompt)
    _parse("scope", {k: entry[k] for k in SCOPE_FIELDS if k in entry}, request.scope)
    if not request.scope.tenant:
        request.scope.tenant = tenant
    answer = entry.get("answer")
    if isinstance(answer, str):
        request.answer.text = answer
    elif isinstance(answer, Mapping):
        _parse("answer", answer, request.answer)
    else:
        raise EntryFormatError("answer: a string or an object (text, chunks, ...) is required")
    metadata = entry.get("metadata", {})
    if not isinstance(metadata, Mapping) or not all(isinstance(v, str) for v in metadata.values()):
        raise EntryFormatError("metadata: an object of strings is required")
    request.answer.metadata.update(metadata)
    category = entry.get("category", "")
    if not isinstance(category, str):
        raise EntryFormatError("category: a string is required")
    request.category = category
    if "ttl_seconds" in entry:
        ttl = entry["ttl_seconds"]
        if not isinstance(ttl, int) or isinstance(ttl, bool):
            raise EntryFormatError("ttl_seconds: a whole number of seconds is required")
        request.ttl_seconds = ttl
    if "namespace" in entry and (found := keys.namespace_key(request.scope)) != entry["namespace"]:
        raise EntryFormatError(
            f"namespace: the scope given hashes to {found}, not {entry['namespace']!r} "
            "(an entry exported without its scope cannot be stored again by scope)"
        )
    return request


def _parse(field: str, value: Mapping[str, Any], message: Any) -> None:
    try:
        json_format.ParseDict(dict(value), message)
    except (json_format.ParseError, TypeError, ValueError) as e:
        raise EntryFormatError(f"{field}: {e}") from None


def entry_of(exported: cache_pb2.ExportedEntry) -> dict[str, Any]:
    """An exported entry in the bulk format."""
    entry: dict[str, Any] = {"tenant": exported.tenant}
    if exported.HasField("scope"):
        entry |= json_format.MessageToDict(exported.scope, preserving_proto_field_name=True)
    entry["prompt"] = exported.prompt
    entry["answer"] = json_format.MessageToDict(exported.answer, preserving_proto_field_name=True)
    entry["category"] = exported.category
    entry["ttl_seconds"] = exported.ttl_seconds
    entry["entry_id"] = exported.entry_id
    entry["namespace"] = exported.namespace
    entry["created_unix_seconds"] = exported.created_unix_seconds
    entry["hits"] = exported.hits
    return entry
