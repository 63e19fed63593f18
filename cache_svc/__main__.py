"""`python -m cache_svc --port 50052 --embedder 127.0.0.1:50053 --redis redis://... --shard-id
shard-0`: serve one cache shard."""

from __future__ import annotations

from cache_svc.service import running_shard
from semcache.runtime.config import ShardConfig
from semcache.runtime.server import run_main


async def _serve(config: ShardConfig) -> None:
    async with running_shard(config) as (server, _shard):
        await server.wait_for_signal()


def main(argv: list[str] | None = None) -> None:
    run_main("cache_svc", ShardConfig, _serve, __doc__, argv)


if __name__ == "__main__":
    main()
