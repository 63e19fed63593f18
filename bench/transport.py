"""What a message costs Python gRPC: a unary call per request against a message on a stream
that is already open (`semcache.runtime.mux`, how the router and shards talk to the next hop).

A server process echoes link messages (`ShardLink/Forward`'s types, no cache behind them);
this process sends them, one at a time (latency) and from 32 concurrent callers
(throughput), each way, and counts both processes' CPU per request. Loopback only, bounded
by SEMCACHE_BENCH_SECONDS per measurement. Results: bench/results/transport.json.

    python -m bench transport
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import grpc

from bench.embed import machine
from semcache.dev.probe import free_port
from semcache.runtime.mux import MuxStream, serve_stream
from semcache.v1 import link_pb2

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SECONDS = float(os.environ.get("SEMCACHE_BENCH_SECONDS", "5"))
SERVICE = "bench.Echo"
Request = link_pb2.ForwardRequest
Reply = link_pb2.ForwardResponse


def _payload() -> Request:
    return Request(lookup={"scope": {"tenant": "bench"}, "prompt": "How do I reset my password?"})


async def serve(port: int) -> None:
    async def unary(request: Request, context: grpc.aio.ServicerContext) -> Reply:
        return Reply(id=request.id)

    async def echo(request: Request) -> Reply:
        return Reply(id=request.id)

    async def stream(requests: AsyncIterator[Request], context: grpc.aio.ServicerContext) -> None:
        await serve_stream(requests, context, echo)

    handlers = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Unary": grpc.unary_unary_rpc_method_handler(
                unary, Request.FromString, Reply.SerializeToString
            ),
            "Stream": grpc.stream_stream_rpc_method_handler(
                stream, Request.FromString, Reply.SerializeToString
            ),
        },
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handlers,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _measure(
    send: Callable[[], Awaitable[object]], callers: int, server_pid: int
) -> dict[str, float]:
    latencies: list[float] = []
    stop = time.perf_counter() + SECONDS

    async def caller() -> None:
        while time.perf_counter() < stop:
            started = time.perf_counter()
            await send()
            latencies.append(time.perf_counter() - started)

    cpu = _cpu_seconds(server_pid) + time.process_time()
    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    elapsed = time.perf_counter() - started
    cpu = _cpu_seconds(server_pid) + time.process_time() - cpu
    return {
        "per_s": len(latencies) / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "cpu_ms_per_request": 1000 * cpu / len(latencies),
    }


async def _client(port: int, server_pid: int) -> dict[str, dict[str, float]]:
    results = {}
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        await asyncio.wait_for(channel.channel_ready(), 30)
        unary = channel.unary_unary(
            f"/{SERVICE}/Unary", Request.SerializeToString, Reply.FromString
        )
        stream = MuxStream(
            channel.stream_stream(
                f"/{SERVICE}/Stream", Request.SerializeToString, Reply.FromString
            )()
        )

        async def on_stream() -> object:
            return await stream.send(_payload())[1]

        ways = (("unary call", lambda: unary(_payload())), ("stream message", on_stream))
        for name, send in ways:
            for callers in (1, 32):
                row = await _measure(send, callers, server_pid)
                results[f"{name}, {callers} caller(s)"] = row
                print(
                    f"  {name:15} x{callers:<3} {row['per_s']:7.0f}/s  "
                    f"p50 {row['p50_ms']:6.3f} ms  "
                    f"CPU {row['cpu_ms_per_request']:.3f} ms a request",
                    flush=True,
                )
        await stream.aclose()
    return results


def main() -> None:
    print(f"transport benchmark: {SECONDS:.0f} s per measurement, loopback", flush=True)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "bench.transport", "--serve", str(port)])
    try:
        results = asyncio.run(_client(port, server.pid))
    finally:
        server.terminate()
        server.wait(timeout=30)
    report = {
        "benchmark": "transport",
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "seconds_per_measurement": SECONDS,
        "results": results,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "transport.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        asyncio.run(serve(int(sys.argv[2])))
    else:
        main()
