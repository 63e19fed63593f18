"""API tokens: which tenant a caller is, from the token it sends.

The token file has one `<token> <tenant>` pair per line (`#` starts a comment). The tenant
`*` marks an operator token: it may name any tenant and call `Admin`. Tokens are kept only
as SHA-256 digests, so the map holds no secret and a lookup compares no secret text.

Callers send `authorization: Bearer <token>` as gRPC metadata (the same header the HTTP
front and the OpenAI SDKs use).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from pathlib import Path

OPERATOR = "*"
HEADER = "authorization"
_TENANT = re.compile(r"^[A-Za-z0-9._:@-]{1,128}$")


class AuthError(Exception):
    """The caller is not who it must be to make this call."""


class UnauthenticatedError(AuthError):
    """No token, or one the map does not know."""


class PermissionDeniedError(AuthError):
    """A known token asking for what its tenant may not do."""


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def bearer_token(metadata: Iterable[tuple[str, str | bytes]]) -> str | None:
    """The token of an `authorization: Bearer <token>` entry, if there is one."""
    for key, value in metadata:
        if key.lower() == HEADER and isinstance(value, str):
            scheme, _, token = value.strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


class TokenMap:
    def __init__(self, tokens: dict[str, str]) -> None:
        for token, tenant in tokens.items():
            if not token:
                raise ValueError("an empty token is not a token")
            if tenant != OPERATOR and not _TENANT.match(tenant):
                raise ValueError(f"tenant {tenant!r}: use 1-128 of A-Z a-z 0-9 . _ : @ -")
        self._tenants = {_digest(token): tenant for token, tenant in tokens.items()}

    def __len__(self) -> int:
        return len(self._tenants)

    @classmethod
    def load(cls, path: Path) -> TokenMap:
        """Reads a token file; ValueError names the line that is wrong."""
        tokens: dict[str, str] = {}
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            fields = line.split("#", 1)[0].split()
            if not fields:
                continue
            if len(fields) != 2:
                raise ValueError(f"{path}:{number}: expected '<token> <tenant>'")
            token, tenant = fields
            if token in tokens:
                raise ValueError(f"{path}:{number}: token given twice")
            tokens[token] = tenant
        if not tokens:
            raise ValueError(f"{path}: no tokens")
        return cls(tokens)

    def tenant_for(self, token: str | None) -> str:
        """The token's tenant (`*` for an operator); UnauthenticatedError when unknown."""
        tenant = None if token is None else self._tenants.get(_digest(token))
        if tenant is None:
            raise UnauthenticatedError(
                "missing or unknown API token: send metadata 'authorization: Bearer <token>'"
            )
        return tenant

    def tenant_of_request(self, token: str | None, requested: str) -> str:
        """The tenant a call acts for: the token's own, or the one it names if allowed."""
        tenant = self.tenant_for(token)
        if tenant == OPERATOR:
            return requested
        if requested and requested != tenant:
            raise PermissionDeniedError(
                f"scope.tenant: this token is for tenant {tenant!r}, not {requested!r}"
            )
        return tenant

    def require_operator(self, token: str | None) -> None:
        if self.tenant_for(token) != OPERATOR:
            raise PermissionDeniedError("Admin calls need an operator token (tenant '*')")
