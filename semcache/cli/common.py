"""What the commands share: the connection and scope options, the client they make, and
output for people or scripts (`--json`)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from semcache.client import DEFAULT_ADDRESS, AsyncClient, Client, ClientOptions
from semcache.tls import TlsFiles


@dataclasses.dataclass(frozen=True)
class Parents:
    """Parent parsers: `connection` (address, token, timeout, TLS, --json), `scope`
    (tenant, model, system, category) and `read` (the prompt, --min-similarity)."""

    connection: argparse.ArgumentParser
    scope: argparse.ArgumentParser
    read: argparse.ArgumentParser


def parents() -> Parents:
    connection = argparse.ArgumentParser(add_help=False)
    connection.add_argument(
        "--address",
        default=os.environ.get("SEMCACHE_ADDRESS", DEFAULT_ADDRESS),
        help="the router (default: $SEMCACHE_ADDRESS or %(default)s)",
    )
    connection.add_argument(
        "--token",
        default=os.environ.get("SEMCACHE_TOKEN"),
        help="API token (default: $SEMCACHE_TOKEN)",
    )
    connection.add_argument("--timeout", type=float, default=10.0, help="seconds")
    for name, what in (
        ("ca", "CA bundle that verifies the router (TLS on)"),
        ("cert", "client certificate, for mutual TLS"),
        ("key", "the client certificate's key"),
    ):
        env = f"SEMCACHE_TLS_{name.upper()}"
        connection.add_argument(
            f"--tls-{name}",
            type=Path,
            default=os.environ.get(env),
            help=f"{what} (PEM; default ${env})",
        )
    connection.add_argument("--json", action="store_true", help="print JSON for scripts")
    scope = argparse.ArgumentParser(add_help=False)
    scope.add_argument(
        "--tenant",
        default=os.environ.get("SEMCACHE_TENANT", ""),
        help="default: $SEMCACHE_TENANT, else the token's (auth on) or 'default'",
    )
    scope.add_argument("--model", default="")
    scope.add_argument("--system", default="", help="the system prompt")
    scope.add_argument("--category", default="", help="hit-policy category")
    read = argparse.ArgumentParser(add_help=False)
    read.add_argument("prompt")
    read.add_argument(
        "--min-similarity",
        type=float,
        default=None,
        help="a stricter cosine similarity bound for this call",
    )
    return Parents(connection, scope, read)


def client(args: argparse.Namespace) -> Client:
    return Client(args.address, **client_options(args))


def async_client(args: argparse.Namespace) -> AsyncClient:
    """As `client`, for commands that stream (make it inside the loop that uses it)."""
    return AsyncClient(args.address, **client_options(args))


def client_options(args: argparse.Namespace) -> ClientOptions:
    tenant = getattr(args, "tenant", "")  # `stats` takes no scope
    credentials = None
    if args.tls_ca or args.tls_cert or args.tls_key:
        try:
            tls = TlsFiles.read(ca=args.tls_ca, cert=args.tls_cert, key=args.tls_key)
        except ValueError as e:
            sys.exit(f"semcache: {e}")
        credentials = tls.channel_credentials()
    return ClientOptions(
        token=args.token, tenant=tenant, timeout=args.timeout, credentials=credentials
    )


def scope(args: argparse.Namespace) -> dict[str, Any]:
    scope: dict[str, Any] = {}
    if args.model:
        scope["model"] = args.model
    if args.system:
        scope["system"] = args.system
    return scope


def emit(args: argparse.Namespace, value: Any, text: str) -> None:
    if args.json:
        print(
            json.dumps(
                dataclasses.asdict(value)
                if dataclasses.is_dataclass(value) and not isinstance(value, type)
                else value,
                ensure_ascii=False,
                indent=2,
            )
        )
    else:
        print(text)


def write_json(path: Path, value: Any) -> None:
    try:
        path.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")
    except OSError as e:
        sys.exit(f"semcache: {path}: {e.strerror or e}")


def table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )
