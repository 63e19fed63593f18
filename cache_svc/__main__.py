"""`python -m cache_svc --port 50052 --embedder 127.0.0.1:50053 --redis redis://... --shard-id
shard-0`: serve one cache shard."""

from __future__ import annotations

import argparse
import asyncio

from cache_svc.service import running_shard
from semcache.config import ConfigError, ShardConfig
from semcache.telemetry import configure_logging


async def _serve(config: ShardConfig) -> None:
    async with running_shard(config) as (server, _shard):
        await server.wait_for_signal()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cache_svc", description=__doc__)
    ShardConfig.add_arguments(parser)
    try:
        config = ShardConfig.load(parser.parse_args(argv))
    except ConfigError as e:
        parser.exit(2, f"cache_svc: configuration error: {e}\n")
    configure_logging("cache_svc", config.log_level)
    asyncio.run(_serve(config))


if __name__ == "__main__":
    main()
