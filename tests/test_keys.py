"""Namespace keys, prompt keys and entry ids: stable, and different wherever scope differs."""

from __future__ import annotations

import subprocess
import sys

import pytest

from semcache import keys
from semcache.v1 import cache_pb2


def scope(**fields) -> cache_pb2.Scope:
    return cache_pb2.Scope(**fields)


BASE = {"tenant": "acme", "model": "gpt-x", "system_prompt": "You are a doctor."}
VARIANTS = {
    "tenant": {**BASE, "tenant": "globex"},
    "model": {**BASE, "model": "gpt-y"},
    "system_prompt": {**BASE, "system_prompt": "You are a chef."},
    "temperature": {**BASE, "params": cache_pb2.GenerationParams(temperature=0.7)},
    "temperature zero is set": {**BASE, "params": cache_pb2.GenerationParams(temperature=0.0)},
    "max_tokens": {**BASE, "params": cache_pb2.GenerationParams(max_tokens=10)},
    "stop": {**BASE, "params": cache_pb2.GenerationParams(stop=["\n"])},
    "extra": {**BASE, "params": cache_pb2.GenerationParams(extra={"response_format": "{}"})},
    "history": {**BASE, "history": [cache_pb2.Turn(role="user", content="hi")]},
    "history role": {**BASE, "history": [cache_pb2.Turn(role="assistant", content="hi")]},
}


def test_every_scope_field_changes_the_namespace() -> None:
    keys_seen = {keys.namespace_key(scope(**BASE))}
    for name, fields in VARIANTS.items():
        key = keys.namespace_key(scope(**fields))
        assert key not in keys_seen, f"{name} did not change the namespace"
        keys_seen.add(key)


def test_empty_tenant_is_the_default_tenant() -> None:
    assert keys.namespace_key(scope(tenant="")) == keys.namespace_key(scope(tenant="default"))


def test_namespace_key_is_stable_across_processes() -> None:
    code = (
        "from semcache import keys; from semcache.v1 import cache_pb2; "
        "print(keys.namespace_key(cache_pb2.Scope(tenant='acme', model='m', "
        "params=cache_pb2.GenerationParams(temperature=0.5, extra={'b': '1', 'a': '2'}))))"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed},
        ).stdout.strip()
        for seed in ("1", "2", "3")
    }
    assert len(outputs) == 1
    (key,) = outputs
    assert len(key) == 32 and int(key, 16) >= 0


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("How do I enable 2FA?", "how do i enable 2fa"),
        ("Hello   world", "hello world"),
        ("Ｃａｆé", "café"),
    ],
)
def test_prompt_key_ignores_case_space_and_trailing_punctuation(a: str, b: str) -> None:
    assert keys.prompt_key(a) == keys.prompt_key(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [("enable 2FA", "disable 2FA"), ("5 miles", "50 miles"), ("a-b", "a b"), ("x+1", "x-1")],
)
def test_prompt_key_keeps_what_changes_meaning(a: str, b: str) -> None:
    assert keys.prompt_key(a) != keys.prompt_key(b)


def test_entry_ids_carry_their_namespace() -> None:
    namespace = keys.namespace_key(scope(**BASE))
    entry_id = keys.new_entry_id(namespace)
    assert keys.namespace_of(entry_id) == namespace
    with pytest.raises(ValueError, match="is not an entry id"):
        keys.namespace_of("nonsense")
