"""Distributed traces (OpenTelemetry), configured only by the standard `OTEL_*` variables.

Tracing is off unless `OTEL_TRACES_EXPORTER` names an exporter (`otlp`, `console`, or both,
comma-separated) or an OTLP endpoint is set (`OTEL_EXPORTER_OTLP_ENDPOINT` or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`: then `otlp`). That differs from the SDK's own default
(`otlp` always) on purpose: a cache must not start shipping spans to localhost:4317 unasked.
`OTEL_SDK_DISABLED=true` turns it off whatever else is set. The rest is the SDK's:
`OTEL_SERVICE_NAME` (default: the service's module name), `OTEL_RESOURCE_ATTRIBUTES`,
`OTEL_TRACES_SAMPLER` (default `parentbased_always_on`) and its `_ARG`, `OTEL_PROPAGATORS`
(default W3C `tracecontext,baggage`), the `OTEL_EXPORTER_OTLP_*` endpoint, headers and
protocol options, `OTEL_BSP_*` batching.

Off, every helper here returns at once: no span objects and no context changes, so tracing
that is off costs nothing measurable (`python -m bench mesh --tracing`).

Context crosses each hop as W3C trace context (`traceparent`, `tracestate`): in the gRPC
metadata of a call, in the `trace_context` map of each message on the multiplexed internal
streams (router to shard, shard to embedder), and in the HTTP headers of the front.
Span attributes never carry prompt or answer text: only the namespace key (a hash), status,
kind, similarity, shard and counts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind as SpanKind  # re-exported: the services name kinds

from semcache.v1 import cache_pb2

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

log = logging.getLogger(__name__)

#: The exporters `OTEL_TRACES_EXPORTER` may name here.
EXPORTERS = ("otlp", "console", "none")

_OFF: AbstractContextManager[None] = contextlib.nullcontext()
_provider: TracerProvider | None = None


class TracingConfigError(ValueError):
    """The `OTEL_*` variables ask for something this build cannot do."""


def enabled() -> bool:
    return _provider is not None


def exporters_from_env(environ: Mapping[str, str] = os.environ) -> list[str]:
    """The exporters the environment asks for (empty: tracing off)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    named = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if not named:
        endpoints = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        return ["otlp"] if any(environ.get(name) for name in endpoints) else []
    chosen = [name.strip() for name in named.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in EXPORTERS]
    if unknown:
        raise TracingConfigError(
            f"OTEL_TRACES_EXPORTER: {', '.join(unknown)} unknown; one or more of "
            f"{', '.join(EXPORTERS)}"
        )
    return [name for name in chosen if name != "none"]


def configure(service: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Turns tracing on for this process when the environment asks for it; returns whether
    it is on. Raises TracingConfigError for an exporter it does not know."""
    exporters = exporters_from_env(environ)
    if not exporters:
        return False
    # The SDK only when asked for: a process with tracing off never imports it.
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SimpleSpanProcessor,
    )

    # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES; without a
    # service name there, it would say "unknown_service": the module's name says more.
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: service}))
    provider = TracerProvider(resource=resource)
    for name in exporters:
        if name == "console":
            # One span a line, written as it ends: for a person reading a terminal.
            console = ConsoleSpanExporter(
                service_name=service,
                out=sys.stdout,
                formatter=lambda span: span.to_json(indent=None) + "\n",
            )
            provider.add_span_processor(SimpleSpanProcessor(console))
        else:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    install(provider)
    log.info("tracing on", extra={"exporters": exporters})
    return True


def install(provider: TracerProvider | None) -> None:
    """Sends this process's spans to `provider` (None: tracing off). Tests install one with
    an in-memory exporter; `configure` installs the environment's."""
    global _provider
    _provider = provider


def shutdown() -> None:
    """Exports what is still buffered and turns tracing off."""
    provider = _provider
    install(None)
    if provider is not None:
        provider.shutdown()


class Tracer:
    """The spans of one service (`scope`: its instrumentation scope, e.g. "cache_svc")."""

    def __init__(self, scope: str) -> None:
        self.scope = scope
        self._for: TracerProvider | None = None
        self._tracer: trace.Tracer | None = None

    def _current(self) -> trace.Tracer | None:
        provider = _provider
        if provider is None:
            return None
        if self._for is not provider:
            self._tracer, self._for = provider.get_tracer(self.scope), provider
        return self._tracer

    def span(
        self,
        name: str,
        attributes: Mapping[str, Any] | None = None,
        *,
        kind: SpanKind = SpanKind.INTERNAL,
        parent: Mapping[str, str] | None = None,
    ) -> AbstractContextManager[trace.Span | None]:
        """A span around a `with` block, current inside it (None when tracing is off).
        `parent`: a W3C carrier (gRPC metadata or a message's `trace_context`) to continue
        a caller's trace."""
        tracer = self._current()
        if tracer is None:
            return _OFF
        context = propagate.extract(parent) if parent is not None else None
        attrs = _attributes(attributes)
        return tracer.start_as_current_span(name, context=context, kind=kind, attributes=attrs)

    def server_span(
        self, method: str, metadata: Iterable[Any] | Mapping[str, str] | None
    ) -> AbstractContextManager[trace.Span | None]:
        """The span of a call this service answers (`method`: "Service/Method"), continuing
        the caller's trace when its gRPC metadata (or a message's `trace_context`) carries
        one."""
        if _provider is None:
            return _OFF
        if isinstance(metadata, Mapping):
            parent = dict(metadata)
        else:
            parent = {m[0]: m[1] for m in metadata or () if isinstance(m[1], str)}
        service, _, name = method.rpartition("/")
        return self.span(
            f"semcache.v1.{method}",
            {"rpc.system": "grpc", "rpc.service": f"semcache.v1.{service}", "rpc.method": name},
            kind=SpanKind.SERVER,
            parent=parent,
        )


def failed(code: int, message: str) -> None:
    """Marks the current span failed with a gRPC status (its numeric `code`)."""
    if _provider is None:
        return
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attribute("rpc.grpc.status_code", code)
        span.set_status(trace.Status(trace.StatusCode.ERROR, message))


def _attributes(attributes: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not attributes:
        return None
    return {key if "." in key else f"semcache.{key}": value for key, value in attributes.items()}


def annotate(**attributes: Any) -> None:
    """Sets `semcache.<name>` attributes on the current span (nothing when tracing is off).
    Never a prompt or an answer: hashes, statuses, kinds, numbers."""
    if _provider is None:
        return
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attributes(_attributes(attributes) or {})


_KINDS = {cache_pb2.MATCH_KIND_EXACT: "exact", cache_pb2.MATCH_KIND_SEMANTIC: "semantic"}


def annotate_cache(info: cache_pb2.CacheInfo) -> None:
    """What the cache did for a request, on the current span: status, kind, similarity,
    threshold, the shard and the namespace key (a hash; never the prompt)."""
    if _provider is None:
        return
    annotate(
        status=cache_pb2.CacheStatus.Name(info.status).removeprefix("CACHE_STATUS_").lower(),
        kind=_KINDS.get(info.kind, "none"),
        similarity=info.similarity,
        threshold=info.threshold,
        shard=info.shard,
        namespace=info.namespace,
        degraded=list(info.degraded),
    )


def carrier() -> dict[str, str]:
    """The current trace context as W3C headers, for the next hop (empty when off)."""
    if _provider is None:
        return {}
    headers: dict[str, str] = {}
    propagate.inject(headers)
    return headers


def metadata() -> tuple[tuple[str, str], ...]:
    """`carrier()` as gRPC call metadata."""
    return tuple(carrier().items())


def ids() -> tuple[str, str] | None:
    """(trace id, span id) of the current span as hex, for log lines; None outside one."""
    if _provider is None:
        return None
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")
