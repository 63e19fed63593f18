"""API tokens: the token map on its own, then enforced by a real router in front of a shard."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from semcache.runtime import auth
from semcache.runtime.config import ConfigError, RouterConfig
from semcache.v1 import cache_pb2
from tests.test_router import mesh

HIT, MISS = cache_pb2.CACHE_STATUS_HIT, cache_pb2.CACHE_STATUS_MISS


def token_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tokens"
    path.write_text(text)
    return path


def test_token_file_lines_and_comments(tmp_path: Path) -> None:
    tokens = auth.TokenMap.load(
        token_file(tmp_path, "# token tenant\nsk-a  acme   # the acme app\n\nsk-ops *\n")
    )
    assert len(tokens) == 2
    assert tokens.tenant_for("sk-a") == "acme"
    assert tokens.tenant_of_request("sk-a", "") == "acme"
    assert tokens.tenant_of_request("sk-ops", "globex") == "globex"
    with pytest.raises(auth.UnauthenticatedError):
        tokens.tenant_for("sk-b")
    with pytest.raises(auth.UnauthenticatedError):
        tokens.tenant_for(None)
    with pytest.raises(auth.PermissionDeniedError, match="for tenant 'acme', not 'globex'"):
        tokens.tenant_of_request("sk-a", "globex")
    with pytest.raises(auth.PermissionDeniedError):
        tokens.require_operator("sk-a")
    tokens.require_operator("sk-ops")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sk-a acme extra\n", r"tokens:1: expected '<token> <tenant>'"),
        ("sk-a acme\nsk-a other\n", r"tokens:2: token given twice"),
        ("# nothing\n", "no tokens"),
        ("sk-a bad/tenant\n", "tenant 'bad/tenant'"),
    ],
)
def test_bad_token_files_are_refused_at_start(tmp_path: Path, text: str, message: str) -> None:
    path = token_file(tmp_path, text)
    with pytest.raises(ConfigError, match=f"tokens_file: .*{message}"):
        RouterConfig(shards="127.0.0.1:1", tokens_file=path).validate()


def test_bearer_token_from_metadata() -> None:
    assert auth.bearer_token([("authorization", "Bearer sk-a")]) == "sk-a"
    assert auth.bearer_token([("Authorization", "bearer  sk-a ")]) == "sk-a"
    assert auth.bearer_token([("authorization", "Basic xyz")]) is None
    assert auth.bearer_token([("authorization", "Bearer ")]) is None
    assert auth.bearer_token([("x-other", "Bearer sk-a")]) is None


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def complete(prompt: str, tenant: str = "") -> cache_pb2.CompleteRequest:
    return cache_pb2.CompleteRequest(scope=cache_pb2.Scope(tenant=tenant), prompt=prompt)


async def expect_code(code: grpc.StatusCode, call) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call
    assert error.value.code() == code, error.value.details()
    return error.value.details()


async def test_router_enforces_tokens(embedder_address, redis_server, tenant, tmp_path) -> None:
    other = f"{tenant}-other"
    path = token_file(tmp_path, f"sk-mine {tenant}\nsk-theirs {other}\nsk-ops *\n")
    async with mesh(embedder_address, redis_server.url, shards=1, tokens_file=path) as m:
        cache, admin = m["cache"], m["admin"]
        unauthenticated = grpc.StatusCode.UNAUTHENTICATED
        details = await expect_code(unauthenticated, cache.Complete(complete("hi there")))
        assert "authorization: Bearer" in details
        await expect_code(
            unauthenticated, cache.Complete(complete("hi there"), metadata=bearer("sk-nope"))
        )
        await expect_code(
            grpc.StatusCode.PERMISSION_DENIED,
            cache.Complete(complete("hi there", other), metadata=bearer("sk-mine")),
        )

        # The token's tenant fills an empty scope.tenant: the entry is the token tenant's.
        first = await cache.Complete(
            complete("What is the capital of Peru?"), metadata=bearer("sk-mine")
        )
        assert first.cache.status == MISS
        as_mine = await cache.Lookup(
            cache_pb2.LookupRequest(
                scope=cache_pb2.Scope(tenant=tenant), prompt="What is the capital of Peru?"
            ),
            metadata=bearer("sk-ops"),
        )
        assert as_mine.cache.status == HIT
        theirs = await cache.Complete(
            complete("What is the capital of Peru?"), metadata=bearer("sk-theirs")
        )
        assert theirs.cache.status == MISS

        # Another tenant's token cannot touch the entry by its id.
        entry = first.cache.entry_id
        await expect_code(
            grpc.StatusCode.NOT_FOUND,
            cache.Invalidate(
                cache_pb2.InvalidateRequest(entry_id=entry), metadata=bearer("sk-theirs")
            ),
        )
        await expect_code(
            grpc.StatusCode.NOT_FOUND,
            cache.Feedback(
                cache_pb2.FeedbackRequest(
                    entry_id=entry, verdict=cache_pb2.FeedbackRequest.VERDICT_WRONG_HIT
                ),
                metadata=bearer("sk-theirs"),
            ),
        )
        removed = await cache.Invalidate(
            cache_pb2.InvalidateRequest(entry_id=entry), metadata=bearer("sk-mine")
        )
        assert removed.removed == 1

        # Admin needs an operator token; health needs none (probes have no token).
        await expect_code(
            grpc.StatusCode.PERMISSION_DENIED,
            admin.Stats(cache_pb2.StatsRequest(), metadata=bearer("sk-mine")),
        )
        await expect_code(unauthenticated, admin.Ring(cache_pb2.RingRequest()))
        stats = await admin.Stats(cache_pb2.StatsRequest(), metadata=bearer("sk-ops"))
        assert stats.total.misses >= 2
        async with grpc.aio.insecure_channel(m["address"]) as channel:
            health = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest()
            )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
