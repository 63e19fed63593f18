"""The package boundaries a user feels: importing the SDK loads grpc, protobuf and the SDK,
never the services' runtime (import-linter in `make lint` checks the static imports; this
checks what a real import loads, lazy imports included)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

_SERVICE_SIDE = ("semcache.runtime", "semcache.dev", "semcache.quality", "semcache.cli")
_SERVICES = ("cache_svc", "router_svc", "embed_svc")
_SERVER_LIBRARIES = ("prometheus_client", "redis", "numpy", "hnswlib", "onnxruntime", "aiohttp")


def _loaded_by(statement: str) -> set[str]:
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(json.loads(run.stdout))


def _within(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def test_importing_the_sdk_loads_no_runtime() -> None:
    # What grpc loads by itself (its own health protos, in 1.85) is not ours to judge.
    added = _loaded_by("from semcache import AsyncClient, Client, SemcacheError") - _loaded_by(
        "import grpc"
    )
    assert {m for m in added if m.startswith("semcache.")} >= {"semcache.client"}
    assert not {m for m in added if _within(m, _SERVICE_SIDE) or m.split(".")[0] in _SERVICES}
    assert not {m for m in added if m.split(".")[0] in _SERVER_LIBRARIES}


def test_the_code_is_laid_out_by_the_formatter() -> None:
    """`ruff format` decides the layout (`make lint` checks it); a table that truly reads
    better by hand may opt out, at most ten times in the whole repository."""
    root = Path(__file__).resolve().parent.parent
    markers = [
        f"{path.relative_to(root)}:{number}"
        for top in ("semcache", "cache_svc", "router_svc", "embed_svc", "bench", "tests")
        for path in sorted((root / top).rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if line.rstrip().endswith(("# fmt: skip", "# fmt: off"))
    ]
    assert len(markers) <= 10, markers
