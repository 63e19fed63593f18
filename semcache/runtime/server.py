"""The grpc.aio bootstrap every service uses: health, reflection, metrics, shutdown.

    async with GrpcServer(config, [Service(descriptor, add_fn, servicer)]) as server:
        await server.wait_for_signal()

On the way out the health status turns NOT_SERVING first (so probes and routers stop
sending), then in-flight calls get `grace_seconds` to finish.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from semcache.channel import CHANNEL_OPTIONS
from semcache.runtime import tracing
from semcache.runtime.admission import AdmissionControl
from semcache.runtime.config import ConfigError, ServerConfig
from semcache.runtime.telemetry import configure_logging
from semcache.tls import TlsFiles

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Service:
    """A servicer and how to register it."""

    descriptor: ServiceDescriptor
    add_to_server: Callable[[Any, grpc.aio.Server], None]
    servicer: object

    @property
    def name(self) -> str:
        return self.descriptor.full_name


class GrpcServer:
    """One grpc.aio server with the standard health and reflection services and metrics."""

    def __init__(self, config: ServerConfig, services: Sequence[Service]) -> None:
        self.config = config
        self.services = list(services)
        self.health = health.aio.HealthServicer()
        self.port: int = 0
        self.metrics_port: int | None = None
        self.health_port: int | None = None
        #: Shared with servicers that admit work of their own (streams of many requests).
        self.admission = AdmissionControl(config.max_in_flight) if config.max_in_flight else None
        #: Set when the server starts to stop: long-lived streams end (`semcache.runtime.mux`).
        self.stopping = asyncio.Event()
        self._server: grpc.aio.Server | None = None
        self._health_server: grpc.aio.Server | None = None
        self._metrics_http: Any = None

    @property
    def address(self) -> str:
        return f"{self.config.host}:{self.port}"

    async def __aenter__(self) -> GrpcServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        options = list(CHANNEL_OPTIONS)
        if self.config.max_connection_age_seconds > 0:
            options += [
                ("grpc.max_connection_age_ms", int(self.config.max_connection_age_seconds * 1000)),
                ("grpc.max_connection_age_grace_ms", int(self.config.grace_seconds * 1000)),
            ]
        interceptors = [self.admission] if self.admission is not None else []
        server = grpc.aio.server(options=options, interceptors=interceptors)
        for service in self.services:
            service.add_to_server(service.servicer, server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        names = [s.name for s in self.services]
        reflection.enable_server_reflection(
            [
                *names,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ],
            server,
        )
        tls = self.config.tls
        self.port = _listen(server, self.config.host, self.config.port, tls)
        await server.start()
        self._server = server
        if self.config.health_port >= 0:
            # Kubelet's gRPC probes speak plaintext only: a second server with health alone.
            health_only = grpc.aio.server()
            health_pb2_grpc.add_HealthServicer_to_server(self.health, health_only)
            try:
                self.health_port = _listen(health_only, self.config.host, self.config.health_port)
            except OSError:
                await self.stop()
                raise
            await health_only.start()
            self._health_server = health_only
        if self.config.metrics_port >= 0:
            self._metrics_http, _ = start_http_server(
                self.config.metrics_port, addr=self.config.host
            )
            self.metrics_port = self._metrics_http.server_port
        for name in ("", *names):  # "" is the server as a whole
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info(
            "serving",
            extra={"address": self.address, "services": names, "metrics_port": self.metrics_port},
        )

    async def stop(self) -> None:
        if self._server is None:
            return
        await self.health.enter_graceful_shutdown()
        self.stopping.set()
        await self._server.stop(self.config.grace_seconds)
        self._server = None
        if self._health_server is not None:
            await self._health_server.stop(None)
            self._health_server = None
        if self._metrics_http is not None:
            await asyncio.to_thread(self._metrics_http.shutdown)
            self._metrics_http.server_close()
            self._metrics_http = None
        log.info("stopped", extra={"address": self.address})

    async def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", *(s.name for s in self.services)):
            await self.health.set(name, status)

    async def wait_for_signal(self) -> None:
        """Returns on SIGINT or SIGTERM."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(Exception):
                    loop.remove_signal_handler(sig)


def _listen(server: grpc.aio.Server, host: str, port: int, tls: TlsFiles | None = None) -> int:
    address = f"{host}:{port}"
    if tls is None:
        bound = server.add_insecure_port(address)
    else:
        bound = server.add_secure_port(address, tls.server_credentials())
    if bound == 0:
        raise OSError(f"cannot listen on {address}")
    return bound


C = TypeVar("C", bound=ServerConfig)


def run_main(
    prog: str,
    config_cls: type[C],
    serve: Callable[[C], Coroutine[Any, Any, None]],
    description: str | None,
    argv: list[str] | None = None,
    fatal: tuple[type[Exception], ...] = (),
) -> None:
    """A service's `__main__`: flags/env/file into a config (exit 2 with the reason when it
    is bad), JSON logging, traces as the `OTEL_*` variables say (`semcache.runtime.tracing`),
    then `serve` until SIGINT/SIGTERM. `fatal` errors exit with their message instead of a
    traceback."""
    parser = argparse.ArgumentParser(prog=f"python -m {prog}", description=description)
    config_cls.add_arguments(parser)
    try:
        config = config_cls.load(parser.parse_args(argv))
    except ConfigError as e:
        parser.exit(2, f"{prog}: configuration error: {e}\n")
    configure_logging(prog, config.log_level)
    try:
        tracing.configure(prog)
    except tracing.TracingConfigError as e:
        parser.exit(2, f"{prog}: configuration error: {e}\n")
    try:
        asyncio.run(serve(config))
    except fatal as e:
        sys.exit(f"{prog}: {e}")
    finally:
        tracing.shutdown()  # what is buffered goes out before the process does
