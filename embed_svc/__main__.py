"""`python -m embed_svc --port 50053`: serve `semcache.v1.Embedder`."""

from __future__ import annotations

from embed_svc.model import ModelNotBuiltError
from embed_svc.service import running_embedder
from semcache.runtime.config import EmbedderConfig
from semcache.runtime.server import run_main


async def _serve(config: EmbedderConfig) -> None:
    async with running_embedder(config) as server:
        await server.wait_for_signal()


def main(argv: list[str] | None = None) -> None:
    run_main("embed_svc", EmbedderConfig, _serve, __doc__, argv, fatal=(ModelNotBuiltError,))


if __name__ == "__main__":
    main()
