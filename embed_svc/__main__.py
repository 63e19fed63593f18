"""`python -m embed_svc --port 50053`: serve `semcache.v1.Embedder`."""

from __future__ import annotations

import argparse
import asyncio
import sys

from embed_svc.model import ModelNotBuiltError
from embed_svc.service import running_embedder
from semcache.config import ConfigError, EmbedderConfig
from semcache.telemetry import configure_logging


async def _serve(config: EmbedderConfig) -> None:
    async with running_embedder(config) as server:
        await server.wait_for_signal()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m embed_svc", description=__doc__)
    EmbedderConfig.add_arguments(parser)
    try:
        config = EmbedderConfig.load(parser.parse_args(argv))
    except ConfigError as e:
        parser.exit(2, f"embed_svc: configuration error: {e}\n")
    configure_logging("embed_svc", config.log_level)
    try:
        asyncio.run(_serve(config))
    except ModelNotBuiltError as e:
        sys.exit(f"embed_svc: {e}")


if __name__ == "__main__":
    main()
