"""TLS for the mesh's gRPC servers and channels, from PEM files.

One identity per process: the certificate a service serves with is also the client
certificate it presents when it dials another service, and one CA bundle verifies the peers
both ways. So mutual TLS across the mesh is one Secret (cert, key, CA) mounted everywhere
and `tls_client_auth` turned on.

    tls = TlsFiles.read(cert=..., key=..., ca=...)
    server.add_secure_port(address, tls.server_credentials())
    channel = open_channel(address, tls, options)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """PEM bytes, read once at start (a bad path fails there, not at the first call)."""

    cert: bytes | None = None  # certificate chain this process presents
    key: bytes | None = None  # its private key
    ca: bytes | None = None  # roots that verify peers; None: the system's roots (dialing only)
    client_auth: bool = False  # servers require and verify client certificates (mTLS)

    @classmethod
    def read(
        cls,
        *,
        cert: Path | None = None,
        key: Path | None = None,
        ca: Path | None = None,
        client_auth: bool = False,
    ) -> TlsFiles:
        """Reads the files; raises ValueError naming what is missing or unreadable."""
        if (cert is None) != (key is None):
            raise ValueError("tls_cert and tls_key go together: give both or neither")
        if client_auth and (ca is None or cert is None):
            raise ValueError("tls_client_auth needs tls_ca (to verify clients) and tls_cert/key")
        return cls(
            cert=_read(cert, "tls_cert"),
            key=_read(key, "tls_key"),
            ca=_read(ca, "tls_ca"),
            client_auth=client_auth,
        )

    def server_credentials(self) -> grpc.ServerCredentials:
        if self.cert is None or self.key is None:
            raise ValueError("a TLS server needs tls_cert and tls_key")
        return grpc.ssl_server_credentials(
            [(self.key, self.cert)],
            root_certificates=self.ca,
            require_client_auth=self.client_auth,
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca, private_key=self.key, certificate_chain=self.cert
        )


def open_channel(
    address: str, tls: TlsFiles | None, options: Sequence[tuple[str, Any]] = ()
) -> grpc.aio.Channel:
    """A grpc.aio channel to `address`: TLS with `tls`, plaintext without."""
    if tls is None:
        return grpc.aio.insecure_channel(address, options=list(options))
    return grpc.aio.secure_channel(address, tls.channel_credentials(), options=list(options))


def _read(path: Path | None, name: str) -> bytes | None:
    if path is None:
        return None
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ValueError(f"{name}: {path}: {e.strerror or e}") from e
    if b"-----BEGIN " not in data:
        raise ValueError(f"{name}: {path} is not a PEM file")
    return data
