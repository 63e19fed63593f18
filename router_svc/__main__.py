"""`python -m router_svc --port 50051 --shards host:port,...`: serve the router."""

from __future__ import annotations

from router_svc.service import running_router
from semcache.runtime.config import RouterConfig
from semcache.runtime.server import run_main


async def _serve(config: RouterConfig) -> None:
    async with running_router(config) as (server, _pool):
        await server.wait_for_signal()


def main(argv: list[str] | None = None) -> None:
    run_main("router_svc", RouterConfig, _serve, __doc__, argv)


if __name__ == "__main__":
    main()
