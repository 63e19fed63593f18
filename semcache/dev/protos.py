"""Generates the Python code for `protos/semcache/v1/*.proto` (`make protos`).

The generated modules are committed under `semcache/v1/` so the package imports without
build steps; `tests/test_protos.py` regenerates into a scratch directory and fails when the
committed code is stale.
"""

from __future__ import annotations

from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[2]
PROTO_ROOT = ROOT / "protos"


def proto_files() -> list[Path]:
    return sorted((PROTO_ROOT / "semcache" / "v1").glob("*.proto"))


def generate(out_dir: Path) -> list[Path]:
    """Writes `semcache/v1/*_pb2*.py(i)` under `out_dir`; returns the files written."""
    include = Path(protoc.__file__).parent / "_proto"  # google/protobuf/*.proto
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *(str(p.relative_to(PROTO_ROOT)) for p in proto_files()),
    ]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed")
    return sorted((out_dir / "semcache" / "v1").glob("*_pb2*.py*"))


def main() -> None:
    for path in generate(ROOT):
        print(path.relative_to(ROOT))


if __name__ == "__main__":
    main()
