"""The committed generated code matches the .proto files (`make protos` regenerates it)."""

from __future__ import annotations

from pathlib import Path

from semcache.dev import protos


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    fresh = protos.generate(tmp_path)
    assert fresh, "protoc generated nothing"
    committed = protos.ROOT / "semcache" / "v1"
    for path in fresh:
        current = committed / path.name
        assert current.exists(), f"{current} missing: run `make protos`"
        assert current.read_bytes() == path.read_bytes(), f"{current} is stale: run `make protos`"
    expected = {p.name for p in fresh} | {"__init__.py"}
    extra = {p.name for p in committed.glob("*.py*")} - expected
    assert not extra, f"generated files without a .proto: {extra}"
