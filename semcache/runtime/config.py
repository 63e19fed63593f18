"""All configuration, typed and validated in one place.

Each service reads one section. Sources, later ones winning: the dataclass defaults, the
TOML file named by `--config` or `$SEMCACHE_CONFIG` (section `[embedder]`, ...), environment
variables `SEMCACHE_<SECTION>_<FIELD>` (e.g. `SEMCACHE_EMBEDDER_PORT=6000`), and command-line
flags (`--port 6000`). Every field is a flag, generated from the dataclass, so the three
sources can never drift apart. A bad value stops the process at start with a message that
names the field and the source.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import inspect
import math
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from semcache.quality.policy import DEFAULT_CATEGORY, HitPolicy, PolicySet
from semcache.runtime.auth import TokenMap
from semcache.runtime.validation import EMBED_TEXT_MAX_BYTES, RequestLimits
from semcache.tls import TlsFiles

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

_DEFAULT_LIMITS = RequestLimits()


class ConfigError(ValueError):
    """A configuration value is missing, malformed or out of range."""


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """What every gRPC process has."""

    SECTION: typing.ClassVar[str] = ""

    host: str = "127.0.0.1"
    port: int = 0
    #: Prometheus text exposition on this HTTP port; 0 picks a free one, -1 turns it off.
    metrics_port: int = -1
    log_level: str = "INFO"
    #: Seconds in-flight calls get to finish on shutdown.
    grace_seconds: float = 5.0
    #: TLS (PEM files): on when cert and key are given; the same identity is presented to
    #: the services this one dials, and `tls_ca` verifies peers (default: system roots).
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    #: Mutual TLS: callers must present a certificate signed by `tls_ca`.
    tls_client_auth: bool = False
    #: A plaintext port serving only grpc.health.v1, for probes that cannot speak TLS
    #: (kubelet's native gRPC probes); -1: none.
    health_port: int = -1
    #: Connections older than this are closed (after grace_seconds), so clients re-resolve
    #: DNS and spread over replicas that came later (behind a headless Service); 0: never.
    max_connection_age_seconds: float = 0.0
    #: Calls in flight (health checks aside) beyond which new ones get RESOURCE_EXHAUSTED
    #: at once; 0: no limit.
    max_in_flight: int = 1024

    @functools.cached_property
    def tls(self) -> TlsFiles | None:
        """The TLS files, or None for plaintext. Read once per config (files are read at
        validation and the same contents served), so a service never sees two versions."""
        if self.tls_cert is None and self.tls_key is None:
            _check(
                self.tls_ca is None and not self.tls_client_auth,
                "tls_cert",
                "tls_ca and tls_client_auth need tls_cert and tls_key as well",
            )
            return None
        try:
            return TlsFiles.read(
                cert=self.tls_cert,
                key=self.tls_key,
                ca=self.tls_ca,
                client_auth=self.tls_client_auth,
            )
        except ValueError as e:
            raise ConfigError(str(e)) from e

    def validate(self) -> None:
        _check(0 <= self.port <= 65535, "port", f"must be in [0, 65535], got {self.port}")
        _check(
            -1 <= self.metrics_port <= 65535,
            "metrics_port",
            f"must be in [-1, 65535], got {self.metrics_port}",
        )
        _check(
            self.log_level.upper() in LOG_LEVELS,
            "log_level",
            f"must be one of {', '.join(LOG_LEVELS)}, got {self.log_level!r}",
        )
        _check(self.grace_seconds >= 0, "grace_seconds", "must be >= 0")
        _check(
            -1 <= self.health_port <= 65535,
            "health_port",
            f"must be in [-1, 65535], got {self.health_port}",
        )
        _check(
            self.max_connection_age_seconds >= 0,
            "max_connection_age_seconds",
            "must be >= 0 (0: never)",
        )
        _check(self.max_in_flight >= 0, "max_in_flight", "must be >= 0 (0: no limit)")
        self.tls  # noqa: B018 - reads and checks the files once

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Adds `--config` and one flag per field (default None: "not given")."""
        parser.add_argument("--config", type=Path, help="TOML config file ($SEMCACHE_CONFIG)")
        docs = _field_docs(cls)
        for f in dataclasses.fields(cls):
            flag = "--" + f.name.replace("_", "-")
            doc = docs.get(f.name, "")
            parser.add_argument(
                flag,
                dest=f.name,
                default=None,
                metavar=f.name.upper(),
                help=f"{doc + ' ' if doc else ''}(default {f.default!r}; "
                f"${_env_name(cls, f.name)})".replace("%", "%%"),
            )

    @classmethod
    def load(
        cls, args: argparse.Namespace | None = None, environ: Mapping[str, str] | None = None
    ) -> Self:
        """Merges defaults, file, environment and flags; validates; raises ConfigError."""
        environ = os.environ if environ is None else environ
        raw: dict[str, tuple[str, Any]] = {}
        file = getattr(args, "config", None) or environ.get("SEMCACHE_CONFIG")
        if file:
            for name, value in _read_section(Path(file), cls.SECTION).items():
                raw[name] = (f"{file} [{cls.SECTION}]", value)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - names)
        if unknown:
            raise ConfigError(f"{file} [{cls.SECTION}]: unknown setting(s) {', '.join(unknown)}")
        # A misspelt variable would otherwise be ignored, e.g. TLS client auth left off.
        prefix = _env_name(cls, "")
        misspelt = sorted(
            k
            for k in environ
            if k.startswith(prefix) and k.removeprefix(prefix).lower() not in names
        )
        if misspelt:
            raise ConfigError(f"unknown setting(s) in the environment: {', '.join(misspelt)}")
        for name in names:
            env = _env_name(cls, name)
            if env in environ:
                raw[name] = (f"${env}", environ[env])
            value = getattr(args, name, None)
            if value is not None:
                raw[name] = ("--" + name.replace("_", "-"), value)
        hints = typing.get_type_hints(cls)
        values = {
            name: _convert(value, hints[name], f"{name} ({source})")
            for name, (source, value) in raw.items()
        }
        config = cls(**values)
        config.validate()
        return config


@dataclass(frozen=True, kw_only=True)
class EmbedderConfig(ServerConfig):
    SECTION: typing.ClassVar[str] = "embedder"

    port: int = 50053
    metrics_port: int = 9102
    #: A built model artifact; default: the tuned model's cached build when there is one,
    #: else the stock model's (and then the service switches when the tuned one is built).
    model_dir: Path | None = None
    #: Seconds between checks for a newly built default model; 0: never switch.
    model_watch_seconds: float = 10.0
    #: Inference threads; each runs onnxruntime with one intra-op thread.
    workers: int = 2
    max_batch_texts: int = 32
    #: Batch cost cap: rows x longest row, in word-piece tokens.
    max_batch_tokens: int = 4096
    #: Texts waiting (all callers); beyond it calls get RESOURCE_EXHAUSTED.
    max_queue: int = 4096
    #: Extra wait for a batch to fill. 0: none; batches grow only while workers are busy.
    max_wait_ms: float = 0.0
    max_texts_per_call: int = 256
    max_text_bytes: int = EMBED_TEXT_MAX_BYTES

    def validate(self) -> None:
        super().validate()
        for name in (
            "workers",
            "max_batch_texts",
            "max_batch_tokens",
            "max_queue",
            "max_texts_per_call",
            "max_text_bytes",
        ):
            _check(getattr(self, name) >= 1, name, f"must be >= 1, got {getattr(self, name)}")
        _check(self.max_wait_ms >= 0, "max_wait_ms", "must be >= 0")
        _check(self.model_watch_seconds >= 0, "model_watch_seconds", "must be >= 0")
        _check(
            self.max_queue >= self.max_texts_per_call,
            "max_queue",
            "must be >= max_texts_per_call, or a full call could never be queued",
        )


@dataclass(frozen=True, kw_only=True)
class RequestLimitsConfig:
    """The request limits a service that takes cache calls (router, shard) enforces."""

    #: The longest prompt (UTF-8 bytes) a request may carry: longer ones are refused
    #: (INVALID_ARGUMENT; on the router's HTTP front, sent upstream uncached). Routers and
    #: shards each enforce their own: raise it on both together.
    max_prompt_bytes: int = _DEFAULT_LIMITS.max_prompt_bytes

    @property
    def request_limits(self) -> RequestLimits:
        return RequestLimits(max_prompt_bytes=self.max_prompt_bytes)

    def _check_limits(self) -> None:
        _check(
            self.max_prompt_bytes >= 1,
            "max_prompt_bytes",
            f"must be >= 1, got {self.max_prompt_bytes}",
        )


@dataclass(frozen=True, kw_only=True)
class ShardConfig(RequestLimitsConfig, ServerConfig):
    SECTION: typing.ClassVar[str] = "shard"

    port: int = 50052
    metrics_port: int = 9110
    shard_id: str = "shard-0"
    embedder: str = "127.0.0.1:50053"
    #: Seconds a shard waits for one embedding before degrading to exact-match only (at
    #: most half of what is left of the caller's deadline). An embedding takes milliseconds
    #: (tens under load); a wait this long means the embedder is stuck.
    embedder_timeout: float = 0.5
    #: Embedder failures in a row (errors, timeouts) that open its circuit: lookups then
    #: degrade at once instead of waiting, ...
    embedder_breaker_failures: int = 3
    #: ... until a background probe, this many seconds later (doubling while it fails, up
    #: to 16x), finds it answering again.
    embedder_breaker_seconds: float = 1.0
    #: Vectors of this many recent texts kept, so a verbatim repeat skips the embedder;
    #: 0: none.
    vector_cache_entries: int = 4096
    #: Stored prompts re-embedded per second when the embedding model changes; 0: never
    #: (entries of an old model are then matched exactly only).
    reembed_rate: float = 50.0
    #: redis://host:port/db; empty: memory-only (entries die with the shard). With
    #: redis_cluster, any node of the cluster.
    redis: str | None = None
    #: true: the Redis at `redis` and `registry` is a Redis Cluster (the URLs name any
    #: node; keys of a namespace share a slot).
    redis_cluster: bool = False
    redis_timeout: float = 1.0
    #: Writes queued while Redis is away; beyond it they are dropped (and counted).
    redis_backlog: int = 100_000
    #: The hit policy (JSON, as `semcache calibrate` writes it) for every model; default:
    #: the shipped policies, each namespace's chosen by the model of its vectors.
    policy: Path | None = None
    #: Overrides the policy's default-category threshold: a cosine similarity in [-1, 1]
    #: (not a distance).
    threshold: float | None = None
    default_ttl_seconds: float = 24 * 3600.0
    max_entries: int = 100_000
    max_bytes: int = 1024 * 1024 * 1024
    #: Which entries go when the shard is full: semantic (recent traffic shared among
    #: duplicates; docs/cache.md), lru or lfu.
    eviction: str = "semantic"
    hnsw_m: int = 16
    hnsw_ef_construction: int = 200
    #: The query ef up to 10,000 entries in a namespace; beyond, it doubles with every
    #: tenfold growth (recall held on bigger graphs).
    hnsw_ef: int = 64
    #: Threads a namespace's graph build uses (after a bulk load); 0: every core.
    index_build_threads: int = 0
    #: Namespaces of this many entries or more keep a snapshot of their graph in Redis, so
    #: a shard taking one over loads it instead of building it; 0: never.
    graph_snapshot_min_entries: int = 10_000
    sweep_interval_seconds: float = 30.0
    #: LLM backend for read-through misses: "echo" or "openai".
    llm: str = "echo"
    echo_delay_ms: float = 0.0
    openai_base_url: str = "https://api.openai.com/v1"
    openai_api_key_env: str = "OPENAI_API_KEY"
    llm_timeout: float = 60.0
    #: Membership registry (redis:// URL) this shard heartbeats into; empty: not registered
    #: (routers then need it in their static --shards list).
    registry: str | None = None
    #: The address routers dial; default: host:port as bound. Required with a wildcard host.
    advertise: str = ""
    #: The registration expires this long after the last heartbeat (sent every ttl / 3).
    registry_ttl_seconds: float = 10.0
    #: The routers' `vnodes`: with a registry, the shard computes the same ring to release
    #: namespaces that membership changes gave to other shards.
    ring_vnodes: int = 150
    #: A stall of the whole process longer than this (its clock jumps: a GC or CPU stall,
    #: SIGSTOP), long enough for routers to eject it, makes the shard drop its namespaces
    #: from memory (Redis keeps them), as another shard may have changed them meanwhile; 0:
    #: off. Keep it below the routers' ejection time (2 health checks timing out: 0.85 s
    #: at the least with their defaults).
    stall_seconds: float = 0.75

    @functools.cached_property
    def policies(self) -> PolicySet:
        """The policy file's (for every model), else the shipped policies (one per model);
        `threshold` overrides the default category's floor in each. Read once per config."""
        try:
            policies = (
                PolicySet((HitPolicy.load(self.policy),)) if self.policy else PolicySet.shipped()
            )
        except ValueError as e:
            raise ConfigError(f"policy: {e}") from e
        if self.threshold is None:
            return policies
        threshold = self.threshold
        return policies.map(
            lambda p: dataclasses.replace(
                p, thresholds={**p.thresholds, DEFAULT_CATEGORY: threshold}
            )
        )

    def validate(self) -> None:
        super().validate()
        if self.threshold is not None:
            _check(
                -1 <= self.threshold <= 1,
                "threshold",
                f"must be a cosine similarity in [-1, 1], got {self.threshold} "
                "(a similarity, not a distance: 0.9 means close)",
            )
        self.policies  # noqa: B018 - reads and checks the file once
        _check(
            self.eviction in ("lru", "lfu", "semantic"),
            "eviction",
            f"must be lru, lfu or semantic, got {self.eviction!r}",
        )
        _check(self.llm in ("echo", "openai"), "llm", f"must be echo or openai, got {self.llm!r}")
        _check(self.vector_cache_entries >= 0, "vector_cache_entries", "must be >= 0 (0: off)")
        _check(self.reembed_rate >= 0, "reembed_rate", "must be >= 0 (0: never)")
        _check(self.index_build_threads >= 0, "index_build_threads", "must be >= 0 (0: all)")
        _check(
            self.graph_snapshot_min_entries >= 0,
            "graph_snapshot_min_entries",
            "must be >= 0 (0: never)",
        )
        for name in (
            "max_entries",
            "max_bytes",
            "redis_backlog",
            "hnsw_m",
            "hnsw_ef_construction",
            "hnsw_ef",
        ):
            _check(getattr(self, name) >= 1, name, f"must be >= 1, got {getattr(self, name)}")
        self._check_limits()
        for name in (
            "embedder_timeout",
            "redis_timeout",
            "default_ttl_seconds",
            "sweep_interval_seconds",
            "llm_timeout",
        ):
            _check(getattr(self, name) > 0, name, f"must be > 0, got {getattr(self, name)}")
        _check(self.ring_vnodes >= 1, "ring_vnodes", f"must be >= 1, got {self.ring_vnodes}")
        _check(
            self.stall_seconds >= 0,
            "stall_seconds",
            f"must be >= 0 (0: off), got {self.stall_seconds}",
        )
        _check(
            self.embedder_breaker_failures >= 1,
            "embedder_breaker_failures",
            f"must be >= 1, got {self.embedder_breaker_failures}",
        )
        _check(
            self.embedder_breaker_seconds > 0,
            "embedder_breaker_seconds",
            f"must be > 0, got {self.embedder_breaker_seconds}",
        )
        ttl = self.registry_ttl_seconds
        _check(ttl >= 1, "registry_ttl_seconds", f"must be >= 1 (beats every ttl / 3), got {ttl}")
        _check(self.echo_delay_ms >= 0, "echo_delay_ms", "must be >= 0")
        _check(bool(self.shard_id.strip()), "shard_id", "must not be empty")
        _check_redis_url("redis", self.redis)
        _check_redis_url("registry", self.registry)
        if self.registry is not None and not self.advertise:
            _check(
                self.host not in ("0.0.0.0", "::", "[::]", ""),
                "advertise",
                f"required with registry when host is {self.host!r} (a wildcard): "
                "give the address routers should dial",
            )
        if self.advertise:
            _check_address("advertise", self.advertise)


@dataclass(frozen=True, kw_only=True)
class RouterConfig(RequestLimitsConfig, ServerConfig):
    SECTION: typing.ClassVar[str] = "router"

    port: int = 50051
    metrics_port: int = 9101
    #: Static membership: comma-separated host:port of the shards.
    shards: str = ""
    #: Dynamic membership: the redis:// URL of the registry the shards heartbeat into.
    registry: str | None = None
    #: true: the registry's Redis is a Redis Cluster (`registry` names any node).
    redis_cluster: bool = False
    registry_interval_seconds: float = 1.0
    vnodes: int = 150
    #: Bounded-load factor c (skip a shard above c x mean in-flight load); 0: off. Off by
    #: default: a spilled call reaches a shard whose copy of the namespace is a snapshot
    #: (docs/router.md), so only turn it on for namespaces that are read far more than written.
    load_factor: float = 0.0
    #: Shards' health is checked this often, each check waiting this long: a frozen shard
    #: (answering nothing) leaves the ring after `unhealthy_after` failed checks, within
    #: about a second, and calls waiting on it go to the next shard.
    health_interval_seconds: float = 0.25
    health_timeout_seconds: float = 0.3
    #: Consecutive failed health checks before a shard leaves the ring.
    unhealthy_after: int = 2
    #: Deadline for a forwarded call when the caller set none.
    default_timeout_seconds: float = 30.0
    #: API tokens, one `<token> <tenant>` per line (tenant `*`: operator); empty: auth off,
    #: the tenant comes from the request.
    tokens_file: Path | None = None
    #: The OpenAI-compatible HTTP front (POST /v1/chat/completions) on this port; -1: off.
    http_port: int = -1
    #: Model ids GET /v1/models lists (comma-separated).
    http_models: str = ""

    @functools.cached_property
    def tokens(self) -> TokenMap | None:
        """The API tokens (None: auth off). Read once per config."""
        if self.tokens_file is None:
            return None
        try:
            return TokenMap.load(self.tokens_file)
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise ConfigError(f"tokens_file: {e}") from e

    @property
    def shard_addresses(self) -> list[str]:
        return [a.strip() for a in self.shards.split(",") if a.strip()]

    def validate(self) -> None:
        super().validate()
        _check(
            bool(self.shard_addresses) != (self.registry is not None),
            "shards",
            "give either shards (static host:port list) or registry (redis:// URL)",
        )
        for address in self.shard_addresses:
            _check_address("shards", address)
        _check_redis_url("registry", self.registry)
        self.tokens  # noqa: B018 - reads and checks the file once
        _check(
            -1 <= self.http_port <= 65535,
            "http_port",
            f"must be in [-1, 65535], got {self.http_port}",
        )
        _check(self.vnodes >= 1, "vnodes", f"must be >= 1, got {self.vnodes}")
        _check(
            self.load_factor == 0 or self.load_factor >= 1,
            "load_factor",
            f"must be 0 (off) or >= 1, got {self.load_factor}",
        )
        _check(self.unhealthy_after >= 1, "unhealthy_after", "must be >= 1")
        self._check_limits()
        for name in (
            "health_interval_seconds",
            "health_timeout_seconds",
            "default_timeout_seconds",
            "registry_interval_seconds",
        ):
            _check(getattr(self, name) > 0, name, f"must be > 0, got {getattr(self, name)}")


def _field_docs(cls: type) -> dict[str, str]:
    """Each field's `#:` comment (the lines right above it in its class), for `--help`:
    the settings are documented once, where they are declared."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        comment: list[str] = []
        for line in inspect.getsource(klass).splitlines():
            stripped = line.strip()
            if stripped.startswith("#:"):
                comment.append(stripped[2:].strip())
            elif (match := re.match(r"(\w+)\s*:", stripped)) and comment:
                docs[match.group(1)] = " ".join(comment)
                comment = []
            else:
                comment = []
    return docs


def _check(ok: bool, name: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{name}: {message}")


def _check_address(name: str, address: str) -> None:
    host, _, port = address.rpartition(":")
    _check(
        bool(host) and port.isdigit() and 0 < int(port) < 65536,
        name,
        f"{address!r} is not host:port",
    )


def _check_redis_url(name: str, url: str | None) -> None:
    if url is not None:
        _check(
            url.startswith(("redis://", "rediss://", "unix://")),
            name,
            f"must be a redis:// URL, got {url!r}",
        )


def _env_name(cls: type[ServerConfig], name: str) -> str:
    return f"SEMCACHE_{cls.SECTION.upper()}_{name.upper()}"


def _read_section(path: Path, section: str) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"config file {path}: {e}") from e
    value = data.get(section, {})
    if not isinstance(value, dict):
        raise ConfigError(f"config file {path}: [{section}] must be a table")
    return value


def _convert(value: Any, hint: Any, what: str) -> Any:
    """Turns a raw value (TOML-typed, or a string from env/flags) into `hint`'s type."""
    if isinstance(hint, types.UnionType):  # `X | None`
        if value in (None, "", "none", "None"):
            return None
        (hint,) = [h for h in typing.get_args(hint) if h is not type(None)]
    try:
        if hint is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("1", "true", "yes", "on"):
                return True
            if str(value).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"not a boolean: {value!r}")
        if hint is int and isinstance(value, float) and not value.is_integer():
            raise ValueError(f"not an integer: {value!r}")
        converted = hint(value)
        if isinstance(converted, float) and not math.isfinite(converted):
            raise ValueError(f"not a finite number: {value!r}")
        return converted
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{what}: {e}") from e
