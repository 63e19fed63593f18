"""The OpenAI-compatible HTTP front: `base_url` for the OpenAI SDKs, over the router's API.

    POST /v1/chat/completions   (stream or not)     GET /v1/models     GET /healthz
    GET /openapi.json           (what the front accepts and answers: `router_svc.openapi`)

It runs in the router process (`--http-port`) and calls the router's own `Complete` and
`StreamComplete` over a loopback channel: auth, validation, admission control, forwarding
and failover are the gRPC path's, not a copy of them. The price is one loopback hop
(~1 ms); the gain is one process to deploy and one behaviour to test.

Tenants: with the router's tokens on, the API key is the token (the SDK sends it as
`Authorization: Bearer`); with auth off, `X-Tenant-ID` names the tenant ("default" when
absent). `Cache-Control: no-cache` skips the lookup, `no-store` keeps the answer out.
"""

from __future__ import annotations

import contextlib
import json
import logging
import ssl
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc
from aiohttp import web
from grpc_health.v1 import health_pb2, health_pb2_grpc

from router_svc import chat, openapi
from router_svc.metrics import TRACER
from semcache.channel import CHANNEL_OPTIONS
from semcache.runtime import tracing
from semcache.runtime.status import CallError
from semcache.runtime.validation import RequestLimits
from semcache.tls import TlsFiles, open_channel
from semcache.v1 import cache_pb2, cache_pb2_grpc

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024 * 1024


def _error_response(
    status: int, message: str, kind: str, param: str | None = None, code: str | None = None
) -> web.Response:
    return web.json_response(chat.error(message, kind, code, param), status=status)


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


#: Seconds a caller should wait before retrying when the cache itself is overloaded or
#: has no shard for the call (RESOURCE_EXHAUSTED, UNAVAILABLE): about what a restarted
#: shard or an ejection takes.
RETRY_AFTER_SECONDS = 1


def _grpc_error(e: grpc.aio.AioRpcError) -> tuple[int, dict[str, Any], dict[str, str]]:
    """The HTTP status, OpenAI error body and headers for a failed call. An upstream's
    error keeps what the upstream said: its status, error type, code and param, and its
    Retry-After; the cache's own overload or outage says when to come back."""
    error = CallError.from_rpc(e)
    status, kind = error.http()
    upstream = error.upstream
    if upstream is not None and upstream.status:  # the upstream answered: as it was
        body = chat.error(
            error.message or "upstream error",
            upstream.type or kind,
            upstream.code or None,
            upstream.param or None,
        )
        headers = {"Retry-After": upstream.retry_after} if upstream.retry_after else {}
        return status, body, headers
    body = chat.error(error.message or e.code().name, kind, e.code().name.lower())
    busy = upstream is None and status in (429, 503)
    return status, body, {"Retry-After": str(RETRY_AFTER_SECONDS)} if busy else {}


class ChatFront:
    """The aiohttp application over a channel to the router."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        auth: bool,
        models: Sequence[str] = (),
        timeout: float = 120.0,
        limits: RequestLimits | None = None,
    ) -> None:
        self.stub = cache_pb2_grpc.SemanticCacheStub(channel)
        self.health = health_pb2_grpc.HealthStub(channel)
        self.auth = auth
        self.models = list(models)
        self.timeout = timeout
        self.limits = limits or RequestLimits()
        self.app = web.Application(client_max_size=MAX_BODY_BYTES)
        self.app.add_routes(
            [
                web.post("/v1/chat/completions", self.chat_completions),
                web.get("/v1/models", self.list_models),
                web.get("/healthz", self.healthz),
                web.get("/openapi.json", self.openapi),
            ]
        )

    def _metadata(self, request: web.Request) -> tuple[tuple[str, str], ...]:
        """The caller's token and the trace context (this request's span) for the router."""
        authorization = request.headers.get("Authorization")
        token = (("authorization", authorization),) if authorization else ()
        return token + tracing.metadata()

    def _call(self, request: web.Request, body: Any) -> chat.ChatCall:
        tenant = "" if self.auth else request.headers.get("X-Tenant-ID", "default")
        control = {d.strip().lower() for d in request.headers.get("Cache-Control", "").split(",")}
        return chat.parse(
            body,
            tenant,
            no_cache="no-cache" in control,
            no_store="no-store" in control,
            limits=self.limits,
        )

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        # The caller's `traceparent` header (W3C) continues its trace through the mesh.
        with TRACER.span(
            "POST /v1/chat/completions",
            {"http.request.method": "POST", "url.path": request.path},
            kind=tracing.SpanKind.SERVER,
            parent=request.headers,
        ) as span:
            response = await self._chat_completions(request)
            if span is not None:
                span.set_attribute("http.response.status_code", response.status)
            return response

    async def _chat_completions(self, request: web.Request) -> web.StreamResponse:
        try:
            body = json.loads(await request.read(), parse_constant=_no_constants)
        except web.HTTPRequestEntityTooLarge:
            return _error_response(
                413, f"the body is over {MAX_BODY_BYTES} bytes", "invalid_request_error"
            )
        except (ValueError, UnicodeDecodeError, RecursionError) as e:
            return _error_response(400, f"the body is not valid JSON: {e}", "invalid_request_error")
        try:
            call = self._call(request, body)
        except chat.ChatRequestError as e:
            return _error_response(400, str(e), "invalid_request_error", e.param)
        if call.stream:
            return await self._stream(request, call)
        try:
            response = await self.stub.Complete(
                call.request, metadata=self._metadata(request), timeout=self.timeout
            )
        except grpc.aio.AioRpcError as e:
            status, error, headers = _grpc_error(e)
            return web.json_response(error, status=status, headers=headers)
        return web.json_response(
            chat.completion(call, response), headers=_cache_headers(call, response.cache)
        )

    async def _stream(self, request: web.Request, call: chat.ChatCall) -> web.StreamResponse:
        events = self.stub.StreamComplete(
            call.request, metadata=self._metadata(request), timeout=self.timeout
        )
        messages = aiter(events)
        try:
            first = await anext(messages, None)
            if first is None:
                return _error_response(502, "the cache ended the stream at once", "api_error")
            info = first.start  # hit or miss, before any text
            # On a miss, wait for the upstream's first answer before sending headers, so
            # an upstream that refuses gets its own status, not a 200 with an error inside.
            early = [await anext(messages)] if info.status != cache_pb2.CACHE_STATUS_HIT else []
        except StopAsyncIteration:
            early = []
        except grpc.aio.AioRpcError as e:
            status, error, headers = _grpc_error(e)
            return web.json_response(error, status=status, headers=headers)
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                **_cache_headers(call, info),
            }
        )
        await response.prepare(request)
        chunk_id, created = chat.completion_id(), int(time.time())

        async def send(data: dict[str, Any] | str) -> None:
            text = data if isinstance(data, str) else json.dumps(data)
            await response.write(f"data: {text}\n\n".encode())

        await send(chat.chunk(call, chunk_id, created, {"role": "assistant", "content": ""}))
        ended = False
        try:
            async for message in _chain(early, messages):
                if message.HasField("end"):
                    end, ended = message.end, True
                    await send(chat.chunk(call, chunk_id, created, {}, end.finish_reason or "stop"))
                    if call.include_usage:
                        hit = info.status == cache_pb2.CACHE_STATUS_HIT
                        usage = {
                            **chat.chunk(call, chunk_id, created, {}),
                            "choices": [],
                            "usage": chat.usage(end.usage, hit),
                        }
                        await send(usage)
                elif message.HasField("delta"):
                    await send(chat.chunk(call, chunk_id, created, {"content": message.delta}))
        except grpc.aio.AioRpcError as e:
            # Headers are gone: the error travels as an SSE event, then the stream ends.
            _, error, _ = _grpc_error(e)
            await send(error)
            return response
        finally:
            events.cancel()  # the caller went away (or we are done): stop the call upstream
        if not ended:
            await send(chat.error("the answer ended without a finish_reason", "api_error"))
            return response
        await send("[DONE]")
        return response

    async def list_models(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "object": "list",
                "data": [
                    {"id": m, "object": "model", "created": 0, "owned_by": "semcache"}
                    for m in self.models
                ],
            }
        )

    async def openapi(self, request: web.Request) -> web.Response:
        return web.json_response(openapi.document(self.models))

    async def healthz(self, request: web.Request) -> web.Response:
        """200 while the router answers SERVING, else 503."""
        try:
            reply = await self.health.Check(health_pb2.HealthCheckRequest(), timeout=2)
            serving = reply.status == health_pb2.HealthCheckResponse.SERVING
        except grpc.aio.AioRpcError:
            serving = False
        return web.json_response(
            {"status": "ok" if serving else "unavailable"}, status=200 if serving else 503
        )


async def _chain(first: list[Any], rest: AsyncIterator[Any]) -> AsyncIterator[Any]:
    for message in first:
        yield message
    async for message in rest:
        yield message


def _cache_headers(call: chat.ChatCall, info: cache_pb2.CacheInfo) -> dict[str, str]:
    headers = {"x-semcache": chat.status_header(call, info)}
    # On a miss too (as LiteLLM's does): how close the best candidate came, for tuning.
    if info.status == cache_pb2.CACHE_STATUS_HIT or info.matched_prompt:
        headers["x-semcache-similarity"] = f"{info.similarity:.4f}"
        headers["x-semcache-threshold"] = f"{info.threshold:.4f}"
    if info.entry_id:
        headers["x-semcache-entry"] = info.entry_id
    return headers


@contextlib.asynccontextmanager
async def running_http_front(
    router: str,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    auth: bool = False,
    models: Sequence[str] = (),
    tls: TlsFiles | None = None,
    https: ssl.SSLContext | None = None,
    limits: RequestLimits | None = None,
) -> AsyncIterator[int]:
    """Serves the front on host:port (HTTPS with `https`) for the router at `router`, dialed
    with `tls`; yields the bound port."""
    channel = open_channel(router, tls, CHANNEL_OPTIONS)
    front = ChatFront(channel, auth=auth, models=models, limits=limits)
    runner = web.AppRunner(front.app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=https)
    try:
        await site.start()
        bound = runner.addresses[0][1]
        log.info("http front serving", extra={"address": f"{host}:{bound}", "router": router})
        yield bound
    finally:
        await runner.cleanup()
        await channel.close()
