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

import contextlib
import os
import ssl
import tempfile
from collections.abc import Iterator, Sequence
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

    def https_server_context(self) -> ssl.SSLContext:
        """The same identity for an HTTPS server (the router's OpenAI front), from the same
        bytes: client certificates required whenever gRPC requires them."""
        if self.cert is None or self.key is None:
            raise ValueError("a TLS server needs tls_cert and tls_key")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        with _in_memory_file(self.cert) as cert, _in_memory_file(self.key) as key:
            context.load_cert_chain(certfile=cert, keyfile=key)
        if self.client_auth and self.ca is not None:
            # As a file, not `cadata`: that takes ASCII only, and CA bundles carry UTF-8
            # comments.
            with _in_memory_file(self.ca) as ca:
                context.load_verify_locations(cafile=ca)
            context.verify_mode = ssl.CERT_REQUIRED
        return context

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


@contextlib.contextmanager
def _in_memory_file(data: bytes) -> Iterator[str]:
    """A path to `data`, for `ssl`, which loads certificates and keys only from files: a
    Linux memfd, which no disk holds; where there is none (another OS, a sandbox that
    refuses it, no /proc), a file only this user may read in a private temporary directory,
    removed when the block ends."""
    fd = _memfd(data)
    if fd is not None:
        try:
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    with tempfile.TemporaryDirectory(prefix="semcache-tls-") as directory:
        path = Path(directory) / "pem"
        path.touch(mode=0o600, exist_ok=False)  # before the key is in it
        path.write_bytes(data)
        yield str(path)


def _memfd(data: bytes) -> int | None:
    """A memfd holding `data`, readable by path; None where that cannot be had."""
    try:
        fd = os.memfd_create("semcache-tls", os.MFD_CLOEXEC)
    except (AttributeError, OSError):
        return None
    try:
        with open(fd, "wb", closefd=False) as file:
            file.write(data)
        os.close(os.open(f"/proc/self/fd/{fd}", os.O_RDONLY))  # readable by path, as ssl reads
    except OSError:
        os.close(fd)
        return None
    return fd


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
