"""Embedding throughput, three ways, in one run (`make bench` or `python -m bench embed`).

1. raw: onnxruntime int8 in this process, no gRPC: the ceiling for the service; each batch
   as one padded run, and in runs of similar length as the service does (`split_by_length`).
2. service: `python -m embed_svc` in its own process under closed-loop gRPC load from this
   one (the load generator shares the machine's cores, as shards would): unary `Embed`
   calls, and the shard's client (`EmbedStream`, one text per request).
3. torch: sentence-transformers fp32 on torch (what the systems we replace run), in the model
   build environment; skipped with a message when that environment cannot be created.

The texts are the project's hand-written chat prompts (tests/data/pairs.jsonl, 4-30 words).
Prints a table with ratios and writes bench/results/embed.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np

from cache_svc.embedder import EmbedderClient
from embed_svc.batcher import run_in_groups
from embed_svc.build import recipe
from embed_svc.model import OnnxEmbedder, Tokens
from semcache.dev.probe import free_port, wait_until_serving
from semcache.v1 import embedder_pb2, embedder_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SECONDS = float(os.environ.get("SEMCACHE_BENCH_SECONDS", "5"))


def prompts() -> list[str]:
    lines = (ROOT / "tests" / "data" / "pairs.jsonl").read_text(encoding="utf-8").splitlines()
    pairs = [json.loads(line) for line in lines if line.strip()]
    return [p["a"] for p in pairs] + [p["b"] for p in pairs]


#: The CPU flags int8 inference speed depends on (AVX-512 VNNI and AMX make it 2-3x faster).
_SIMD_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8")


def machine() -> dict[str, object]:
    """The CPU model and its SIMD flags: figures compare only within one machine."""
    info = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next(
        (line.split(":", 1)[1].strip() for line in info if line.startswith("model name")),
        platform.processor(),
    )
    flags = next((line.split(":", 1)[1].split() for line in info if line.startswith("flags")), [])
    return {
        "cpu": cpu,
        "simd": [f for f in _SIMD_FLAGS if f in flags],
        "cores": os.cpu_count(),
        "python": platform.python_version(),
    }


def _closed_loop(
    run_batch: Callable[[list[str]], object], texts: list[str], batch: int, threads: int
) -> float:
    """Texts per second with `threads` callers each embedding `batch` texts at a time."""
    stop = time.perf_counter() + SECONDS
    counts = [0] * threads

    def worker(index: int) -> None:
        position = index * batch
        while time.perf_counter() < stop:
            chunk = [texts[(position + i) % len(texts)] for i in range(batch)]
            run_batch(chunk)
            counts[index] += batch
            position += batch * threads

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(worker, range(threads)))
    return sum(counts) / (time.perf_counter() - started)


def quality() -> dict[str, dict[str, float]]:
    """Int8 vectors against sentence-transformers fp32 (saved at model build), embedded alone
    and in batches of 32: how much the batch a text runs in moves its vector."""
    model = OnnxEmbedder()
    texts = [s for s in recipe.SENTENCES.read_text(encoding="utf-8").splitlines() if s.strip()]
    reference = np.load(model.model_dir / recipe.REFERENCE_FILE)
    alone = np.concatenate([model.embed([t]) for t in texts])
    batched = np.concatenate([model.embed(texts[i : i + 32]) for i in range(0, len(texts), 32)])
    ordinary = np.array([t.isascii() and len(t.split()) >= 4 for t in texts])
    report = {}
    for name, vectors in (("alone", alone), ("batch32", batched)):
        for subset, mask in (("all", np.ones(len(texts), bool)), ("ordinary", ordinary)):
            cosine = (vectors * reference).sum(axis=1)[mask]
            report[f"{name}/{subset}"] = {
                "texts": int(mask.sum()),
                "mean": float(cosine.mean()),
                "p05": float(np.quantile(cosine, 0.05)),
                "min": float(cosine.min()),
                "share_ge_0.98": float((cosine >= 0.98).mean()),
            }
    return report


def bench_raw(texts: list[str]) -> dict[str, float]:
    """In-process int8, the best of a few threading layouts."""
    results: dict[str, float] = {}
    one_thread = OnnxEmbedder(intra_op_threads=1)
    two_threads = OnnxEmbedder(intra_op_threads=2)
    one_thread.embed(texts[:8])
    two_threads.embed(texts[:8])
    for batch in (8, 32):
        results[f"2 callers x 1 thread, batch {batch}"] = _closed_loop(
            one_thread.embed, texts, batch, threads=2
        )
        results[f"2 callers x 1 thread, batch {batch}, split by length"] = _closed_loop(
            lambda chunk: run_in_groups(one_thread, one_thread.tokenize(chunk)),
            texts,
            batch,
            threads=2,
        )
        results[f"1 caller x 2 threads, batch {batch}"] = _closed_loop(
            two_threads.embed, texts, batch, threads=1
        )
    return results


def run_cost_model(model: OnnxEmbedder) -> dict[str, float]:
    """Fits one run's time as fixed + per_token x rows x width (least squares over a grid of
    padded batches): what `split_by_length`'s RUN_OVERHEAD_TOKENS stands for."""
    rows_width, seconds = [], []
    for rows in (1, 2, 4, 8, 16):
        for width in (8, 16, 24, 32, 48):
            ids = np.full(width, 2000, dtype=np.int64)
            batch = [Tokens(ids=ids, truncated=False)] * rows
            model.run(batch)
            runs = []
            for _ in range(max(5, 80 // rows)):
                started = time.perf_counter()
                model.run(batch)
                runs.append(time.perf_counter() - started)
            rows_width.append(rows * width)
            seconds.append(statistics.median(runs))
    per_token, fixed = np.polyfit(rows_width, seconds, 1)
    return {
        "fixed_ms": 1000 * fixed,
        "per_padded_token_ms": 1000 * per_token,
        "fixed_in_padded_tokens": fixed / per_token,
    }


async def _grpc_load(
    address: str, texts: list[str], concurrency: int, per_call: int
) -> dict[str, float]:
    latencies: list[float] = []
    stop = time.perf_counter() + SECONDS
    async with grpc.aio.insecure_channel(address) as channel:
        stub = embedder_pb2_grpc.EmbedderStub(channel)
        await stub.Embed(embedder_pb2.EmbedRequest(texts=texts[:8]))  # warm-up

        async def caller(index: int) -> None:
            position = index * per_call
            while time.perf_counter() < stop:
                chunk = [texts[(position + i) % len(texts)] for i in range(per_call)]
                started = time.perf_counter()
                await stub.Embed(embedder_pb2.EmbedRequest(texts=chunk))
                latencies.append(time.perf_counter() - started)
                position += per_call * concurrency

        started = time.perf_counter()
        await asyncio.gather(*(caller(i) for i in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "texts_per_s": len(latencies) * per_call / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
    }


async def _stream_load(address: str, texts: list[str], concurrency: int) -> dict[str, float]:
    """The same through the shard's client: one text per request on one `EmbedStream`."""
    latencies: list[float] = []
    stop = time.perf_counter() + SECONDS
    client = EmbedderClient(address, timeout=30, cache_entries=0)
    try:
        await client.embed(texts[0])  # warm-up

        async def caller(index: int) -> None:
            position = index
            while time.perf_counter() < stop:
                started = time.perf_counter()
                await client.embed(texts[position % len(texts)])
                latencies.append(time.perf_counter() - started)
                position += concurrency

        started = time.perf_counter()
        await asyncio.gather(*(caller(i) for i in range(concurrency)))
        elapsed = time.perf_counter() - started
    finally:
        await client.aclose()
    latencies.sort()
    return {
        "texts_per_s": len(latencies) / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
    }


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident memory (VmHWM), in MiB: what a memory limit must allow."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for pid {pid}")


def bench_service(texts: list[str]) -> tuple[dict[str, dict[str, float]], float]:
    """Throughput and latency of the embedder process under load, and its peak memory."""
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "embed_svc",
            "--port",
            str(port),
            "--metrics-port",
            "-1",
            "--log-level",
            "WARNING",
        ],
    )
    try:
        wait_until_serving(f"127.0.0.1:{port}", process=server)
        results = {}
        for concurrency, per_call in ((1, 1), (8, 1), (32, 1), (64, 1), (8, 8)):
            name = f"{concurrency} callers x {per_call} text(s) per call"
            results[name] = asyncio.run(
                _grpc_load(f"127.0.0.1:{port}", texts, concurrency, per_call)
            )
            if per_call == 1 and concurrency in (1, 32):
                results[f"{concurrency} callers, shard stream client"] = asyncio.run(
                    _stream_load(f"127.0.0.1:{port}", texts, concurrency)
                )
        return results, peak_rss_mib(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)


def bench_torch(texts: list[str]) -> dict[str, float] | str:
    """Runs bench/torch_baseline.py in the model build environment, or says why not."""
    try:
        from embed_svc.build.__main__ import ensure_build_env

        python = ensure_build_env()
    except (subprocess.CalledProcessError, OSError) as e:
        return f"skipped: the torch build environment could not be created ({e})"
    done = subprocess.run(
        [str(python), str(ROOT / "bench" / "torch_baseline.py"), "--seconds", str(SECONDS)],
        input=json.dumps(texts),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        return f"skipped: torch baseline failed: {done.stderr.strip()[-500:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    texts = prompts()
    print(
        f"embedding benchmark: {len(texts)} chat prompts, {SECONDS:.0f} s per measurement",
        flush=True,
    )
    cosine = quality()
    print(f"\nint8 vs sentence-transformers fp32 ({recipe.SENTENCES.name}):")
    print(f"{'':18} {'texts':>5} {'mean':>7} {'p05':>7} {'min':>7} {'>=0.98':>7}")
    for name, q in cosine.items():
        print(
            f"{name:18} {q['texts']:5d} {q['mean']:7.4f} {q['p05']:7.4f} {q['min']:7.4f} "
            f"{q['share_ge_0.98']:7.1%}"
        )
    cost = run_cost_model(OnnxEmbedder(intra_op_threads=1))
    print(
        f"\none run: {cost['fixed_ms']:.2f} ms + {cost['per_padded_token_ms']:.4f} ms per "
        f"padded token (fixed = {cost['fixed_in_padded_tokens']:.1f} tokens)"
    )
    raw = bench_raw(texts)
    service, service_rss = bench_service(texts)
    torch = bench_torch(texts)

    best_raw = max(raw.values())
    best_service = max(r["texts_per_s"] for r in service.values())
    best_torch = max(torch.values()) if isinstance(torch, dict) else None

    rows = [(f"raw int8: {k}", v, "") for k, v in raw.items()]
    rows += [
        (f"service: {k}", r["texts_per_s"], f"p50 {r['p50_ms']:.1f} ms  p99 {r['p99_ms']:.1f} ms")
        for k, r in service.items()
    ]
    rows += (
        [(f"torch fp32: {k}", v, "") for k, v in torch.items()]
        if isinstance(torch, dict)
        else [(f"torch fp32: {torch}", 0.0, "")]
    )
    print(f"\n{'configuration':58} {'texts/s':>9}")
    for name, rate, extra in rows:
        print(f"{name:58} {rate:9.0f}  {extra}")
    print(f"\nembedder process peak memory under load: {service_rss:.0f} MiB")
    print(f"best service / best raw int8:   {best_service / best_raw:.2f}  (goal >= 0.80)")
    if best_torch:
        print(f"best service / best torch fp32: {best_service / best_torch:.2f}  (goal >= 3.0)")

    RESULTS.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "embed",
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "seconds_per_measurement": SECONDS,
        "texts": len(texts),
        "quality_vs_fp32": cosine,
        "run_cost": cost,
        "raw_int8": raw,
        "service": service,
        "service_peak_rss_mib": service_rss,
        "torch_fp32": torch,
        "ratios": {
            "service_vs_raw": best_service / best_raw,
            "service_vs_torch": best_service / best_torch if best_torch else None,
        },
    }
    out = RESULTS / "embed.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    main()
