"""The clients' options, defined once for `AsyncClient` and `Client`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

import grpc

from semcache.channel import CHANNEL_OPTIONS
from semcache.client.retry import RetryPolicy

DEFAULT_ADDRESS = "127.0.0.1:50051"
DEFAULT_TIMEOUT = 10.0  # seconds
_DEFAULT_RETRY = RetryPolicy()


class ClientOptions(TypedDict, total=False):
    """The keyword options both clients take.

    `token` is sent on every call as `authorization: Bearer <token>`; `tenant` is the scope
    tenant of calls that name none (empty, the default: the token's tenant when the router
    has auth on, else "default"). `timeout` (seconds, default 10; None for no deadline) is
    every call's default deadline, covering all its attempts. `retries` (3), `backoff`
    (0.1 s) and `max_backoff` (2 s) make the `RetryPolicy`, or `retry` gives one whole.
    `credentials` (`grpc.ssl_channel_credentials(...)`, or `TlsFiles.read(ca=...)
    .channel_credentials()` from `semcache.tls`) dials the router over TLS; without them,
    plaintext.
    """

    token: str | None
    tenant: str
    timeout: float | None
    retries: int
    backoff: float
    max_backoff: float
    retry: RetryPolicy
    credentials: grpc.ChannelCredentials | None


@dataclass(frozen=True, slots=True)
class Settings:
    """`ClientOptions` with their defaults applied and checked."""

    token: str | None = None
    tenant: str = ""
    timeout: float | None = DEFAULT_TIMEOUT
    retry: RetryPolicy = _DEFAULT_RETRY
    credentials: grpc.ChannelCredentials | None = None

    @classmethod
    def of(cls, options: ClientOptions) -> Settings:
        unknown = sorted(set(options) - set(ClientOptions.__annotations__))
        if unknown:
            raise TypeError(f"unknown client option(s): {', '.join(unknown)}")
        shorthand = {"retries", "backoff", "max_backoff"} & set(options)
        if options.get("retry") is not None and shorthand:
            raise TypeError("give retry or retries/backoff/max_backoff, not both")
        timeout = options.get("timeout", DEFAULT_TIMEOUT)
        if timeout is not None and timeout <= 0:
            raise ValueError("timeout must be > 0 (or None: no deadline)")
        return cls(
            token=options.get("token"),
            tenant=options.get("tenant", ""),
            timeout=timeout,
            retry=options.get("retry")
            or RetryPolicy(
                retries=options.get("retries", _DEFAULT_RETRY.retries),
                backoff=options.get("backoff", _DEFAULT_RETRY.backoff),
                max_backoff=options.get("max_backoff", _DEFAULT_RETRY.max_backoff),
            ),
            credentials=options.get("credentials"),
        )

    def open_channel(self, address: str) -> grpc.aio.Channel:
        # The channel's own reconnect backoff (1 s at first by default) follows ours, so a
        # retry after a refused connection really dials again; its own subchannel pool keeps
        # it from inheriting another client's backoff to the same address.
        options = [
            *CHANNEL_OPTIONS,
            ("grpc.use_local_subchannel_pool", 1),
            ("grpc.initial_reconnect_backoff_ms", max(1, int(1000 * self.retry.backoff))),
            ("grpc.max_reconnect_backoff_ms", max(1, int(1000 * self.retry.max_backoff))),
        ]
        if self.credentials is None:
            return grpc.aio.insecure_channel(address, options=options)
        return grpc.aio.secure_channel(address, self.credentials, options=options)
