"""Sentence vectors for evaluation and calibration, from the real embedding service.

    vectors = await embed_texts(texts, "127.0.0.1:50053")   # or None: a private embedder
    vectors.of(["How do I reset my password?"])             # rows, unit-normalised float32

Texts are deduplicated, then looked up in an on-disk cache keyed by the model id the server
reports (so a new model never reuses old vectors) and by a digest of each text (so a subset,
such as the held-out split or `--limit`, reuses what a bigger run embedded). Only the texts
not cached are sent, in batches of `BATCH` with `CONCURRENCY` calls in flight.

The cache lives in `<cache root>/embeddings/<model id>/`, the cache root being
`$SEMCACHE_CACHE_DIR`, else `$XDG_CACHE_HOME/semcache`, else `~/.cache/semcache` (the rule
the model build uses). Each run that embeds anything adds one shard there: `<name>.npy`
(float32, one row a text) and `<name>.keys.npy` (16-byte sha256 prefixes of the texts, same
order), written to temporary names and renamed, keys last, so a reader never sees half a
shard. The int8 model's vectors depend a little on what shares their batch; the cache also
pins them, so reruns give the same numbers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np

from semcache.channel import CHANNEL_OPTIONS
from semcache.dev.probe import free_port, wait_until_serving
from semcache.v1 import embedder_pb2, embedder_pb2_grpc

#: Texts per Embed call: the service's batch size, so one call fills one batch.
BATCH = 32
#: Calls in flight: keeps both inference workers busy while responses travel.
CONCURRENCY = 8
#: Seconds one Embed call may take (a call queues behind CONCURRENCY - 1 others).
CALL_TIMEOUT = 120.0
#: Seconds to wait for a private embedder to load its model and serve.
START_TIMEOUT = 120.0
DIGEST_BYTES = 16
#: Texts embedded between two writes to the on-disk cache.
STORE_EVERY = 8192

#: Called with (texts embedded so far, texts to embed) while embedding.
Progress = Callable[[int, int], None]


class EmbeddingError(RuntimeError):
    """The texts could not be embedded (embedder unreachable, rejected a text, ...)."""


@dataclass(frozen=True)
class TextVectors:
    """Distinct texts and their vectors (row i is the vector of `texts[i]`)."""

    texts: list[str]
    vectors: np.ndarray
    model: str
    #: How many of `texts` came from the on-disk cache rather than the embedder.
    from_cache: int = 0
    _rows: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.vectors):
            raise ValueError(f"{len(self.texts)} texts but {len(self.vectors)} vectors")
        object.__setattr__(self, "_rows", {t: i for i, t in enumerate(self.texts)})

    def of(self, texts: Sequence[str]) -> np.ndarray:
        """The vectors of `texts` (each must be one of `self.texts`), one row each."""
        return self.vectors[[self._rows[t] for t in texts]]


def cache_root() -> Path:
    """`$SEMCACHE_CACHE_DIR`, else `$XDG_CACHE_HOME/semcache`, else `~/.cache/semcache`."""
    if explicit := os.environ.get("SEMCACHE_CACHE_DIR"):
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "semcache"


def digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()[:DIGEST_BYTES]


class VectorCache:
    """The vectors one model gave, on disk, by text digest (see the module docstring)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @classmethod
    def for_model(cls, model: str) -> VectorCache:
        # The model id comes from a server: keep it to one safe path component.
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", model).strip(".") or "unnamed"
        return cls(cache_root() / "embeddings" / safe)

    def lookup(self, digests: Sequence[bytes]) -> tuple[np.ndarray | None, np.ndarray]:
        """(vectors, found): row i of vectors holds digest i's vector where found[i]."""
        wanted = {d: i for i, d in enumerate(digests)}
        found = np.zeros(len(digests), dtype=bool)
        vectors: np.ndarray | None = None
        for keys_file in sorted(self.directory.glob("*.keys.npy")):
            try:
                keys = np.load(keys_file)
                shard = np.load(
                    keys_file.with_name(keys_file.name.replace(".keys", "")), mmap_mode="r"
                )
            except (OSError, ValueError):
                continue  # unreadable: ignored, the texts are embedded again
            if keys.ndim != 2 or shard.ndim != 2 or len(keys) != len(shard):
                continue
            rows, targets = [], []
            for row, key in enumerate(keys):
                target = wanted.get(key.tobytes())
                if target is not None and not found[target]:
                    rows.append(row)
                    targets.append(target)
            if not rows:
                continue
            if vectors is None:
                vectors = np.zeros((len(digests), shard.shape[1]), dtype=np.float32)
            if shard.shape[1] != vectors.shape[1]:
                continue
            vectors[targets] = shard[rows]
            found[targets] = True
        return vectors, found

    def add(self, digests: Sequence[bytes], vectors: np.ndarray) -> None:
        """Stores a new shard; best effort (a read-only cache only costs speed)."""
        if not digests:
            return
        name = hashlib.sha256(b"".join(sorted(digests))).hexdigest()[:32]
        keys = np.frombuffer(b"".join(digests), dtype=np.uint8).reshape(len(digests), -1)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            for suffix, array in ((".npy", vectors.astype("<f4")), (".keys.npy", keys)):
                final = self.directory / f"{name}{suffix}"
                temporary = final.with_name(f".{final.name}.{os.getpid()}.tmp")
                with temporary.open("wb") as f:
                    np.save(f, array)
                temporary.replace(final)
        except OSError as e:
            print(f"semcache: could not cache vectors in {self.directory}: {e}", file=sys.stderr)


# --- the embedder -------------------------------------------------------------------------


@contextlib.contextmanager
def private_embedder(
    timeout: float = START_TIMEOUT, model_dir: Path | None = None
) -> Iterator[str]:
    """Runs `python -m embed_svc` on a free loopback port, of the model built in
    `model_dir` (default: the one it serves by default); yields its address. Blocking."""
    port = free_port()
    address = f"127.0.0.1:{port}"
    argv = [
        sys.executable,
        "-m",
        "embed_svc",
        "--port",
        str(port),
        "--metrics-port",
        "-1",
        "--log-level",
        "WARNING",
        *(["--model-dir", str(model_dir)] if model_dir is not None else []),
    ]
    process = subprocess.Popen(argv)
    try:
        try:
            wait_until_serving(address, timeout=timeout, process=process)
        except (RuntimeError, TimeoutError) as e:
            raise EmbeddingError(f"the private embedder did not start: {e}") from e
        yield address
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextlib.asynccontextmanager
async def _embedder_address(embedder: str | None) -> AsyncIterator[str]:
    if embedder is not None:
        yield embedder
        return
    context = private_embedder()
    # Starting and stopping a process block: off the event loop.
    address = await asyncio.to_thread(context.__enter__)
    try:
        yield address
    finally:
        await asyncio.to_thread(context.__exit__, None, None, None)


def _error(address: str, e: grpc.aio.AioRpcError) -> EmbeddingError:
    return EmbeddingError(f"embedder {address}: {e.code().name}: {e.details()}")


async def _embed_batches(
    stub: embedder_pb2_grpc.EmbedderStub,
    address: str,
    model: str,
    texts: list[str],
    progress: Callable[[int], None],
) -> np.ndarray:
    batches = [texts[i : i + BATCH] for i in range(0, len(texts), BATCH)]
    results: list[np.ndarray | None] = [None] * len(batches)
    pending = iter(range(len(batches)))

    async def worker() -> None:
        for index in pending:  # shared iterator: each batch goes to one worker
            try:
                reply = await stub.Embed(
                    embedder_pb2.EmbedRequest(texts=batches[index]), timeout=CALL_TIMEOUT
                )
            except grpc.aio.AioRpcError as e:
                raise _error(address, e) from e
            if reply.model != model:
                raise EmbeddingError(
                    f"embedder {address} changed model during the run: {model} -> {reply.model}"
                )
            results[index] = np.stack(
                [np.frombuffer(e.vector, dtype="<f4") for e in reply.embeddings]
            )
            progress(len(batches[index]))

    async with asyncio.TaskGroup() as group:
        for _ in range(min(CONCURRENCY, len(batches))):
            group.create_task(worker())
    return np.concatenate([r for r in results if r is not None])


async def embed_texts(
    texts: Sequence[str], embedder: str | None = None, *, progress: Progress | None = None
) -> TextVectors:
    """The vectors of the distinct `texts`, through the embedder at `embedder` (HOST:PORT), or
    a private one started (and stopped) for the call when None; cached on disk.

    Raises EmbeddingError when the texts cannot be embedded, ValueError on an empty text.
    """
    unique = list(dict.fromkeys(texts))
    for text in unique:
        if not text.strip():
            raise ValueError("cannot embed an empty or whitespace-only text")
    async with (
        _embedder_address(embedder) as address,
        grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) as channel,
    ):
        stub = embedder_pb2_grpc.EmbedderStub(channel)
        try:
            # The model id names the cache: ask the server, never assume it.
            probe = await stub.Embed(embedder_pb2.EmbedRequest(texts=["semcache"]), timeout=30)
        except grpc.aio.AioRpcError as e:
            raise _error(address, e) from e
        model = probe.model
        cache = VectorCache.for_model(model)
        digests = [digest(t) for t in unique]
        cached, found = await asyncio.to_thread(cache.lookup, digests)
        vectors = cached if cached is not None else np.zeros((len(unique), probe.dimension), "<f4")
        # By length: a batch is padded to its longest text, so similar lengths together
        # cost a fraction of the work of a random mix (5x less on QQP's long tail).
        missing = sorted(np.flatnonzero(~found).tolist(), key=lambda i: len(unique[i]))
        done = 0

        def advance(count: int) -> None:
            nonlocal done
            done += count
            if progress is not None:
                progress(done, len(missing))

        if missing and progress is not None:
            progress(0, len(missing))
        # Stored a part at a time: an interrupted run keeps what it embedded.
        for start in range(0, len(missing), STORE_EVERY):
            part = missing[start : start + STORE_EVERY]
            fresh = await _embed_batches(stub, address, model, [unique[i] for i in part], advance)
            vectors[part] = fresh
            await asyncio.to_thread(cache.add, [digests[i] for i in part], fresh)
    return TextVectors(unique, vectors, model, from_cache=int(found.sum()))


def embed_texts_sync(
    texts: Sequence[str], embedder: str | None = None, *, progress: Progress | None = None
) -> TextVectors:
    """`embed_texts` for code without an event loop (never call it inside a coroutine)."""
    return asyncio.run(embed_texts(texts, embedder, progress=progress))


class ProgressLine:
    """A `Progress` that prints `embedding: 12,345/80,000 texts (850/s)` to stderr at most
    every `every` seconds, and once at the end."""

    def __init__(self, every: float = 5.0) -> None:
        self.every = every
        self.started = self.last = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done == 0:
            self.started = self.last = now
            return
        if now - self.last < self.every and done < total:
            return
        self.last = now
        rate = done / max(now - self.started, 1e-9)
        print(f"embedding: {done:,}/{total:,} texts ({rate:.0f}/s)", file=sys.stderr, flush=True)
