"""Bulk import and export: the entry format, and `semcache import` / `semcache export`
through a real router, two shards, the embedder and Redis (the CLI in its own process)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import grpc
import pytest

from cache_svc.service import running_shard
from cache_svc.shard import BULK_EMBEDS
from semcache import bulk, keys
from semcache.client import AsyncClient, PermissionDeniedError, UnavailableError
from semcache.dev.localredis import LocalRedis
from semcache.dev.probe import free_port
from semcache.v1 import cache_pb2
from tests.conftest import shard_config
from tests.test_auth import token_file
from tests.test_router import HIT, mesh

SYSTEM = "You answer in one sentence."


def entries(tenant: str) -> list[dict]:
    """Thirty entries in three scopes: plain, with a system prompt and parameters, and a
    conversation's second turn."""
    scopes = [
        {"tenant": tenant},
        {"tenant": tenant, "model": "m1", "system_prompt": SYSTEM, "params": {"temperature": 0.2}},
        {"tenant": tenant, "history": [{"role": "user", "content": "I use Linux."}]},
    ]
    return [
        scope | {"prompt": f"What is fact number {i} about {topic}?", "answer": f"{topic} {i}"}
        for scope in scopes
        for topic in ("rivers", "comets")
        for i in range(5)
    ]


def test_an_entry_reads_into_the_store_request_it_stands_for() -> None:
    request = bulk.store_request(
        {
            "prompt": "How do I reset my password?",
            "answer": {"text": "Open Settings.", "finish_reason": "stop"},
            "model": "gpt-4o",
            "params": {"temperature": 0.2, "stop": ["\n"], "seed": "7"},
            "history": [{"role": "user", "content": "Hi"}],
            "ttl_seconds": 60,
            "metadata": {"source": "faq"},
        },
        tenant="acme",
    )
    assert request.scope.tenant == "acme" and request.scope.model == "gpt-4o"
    assert request.scope.params.temperature == 0.2 and request.scope.params.seed == 7
    assert request.scope.history[0].content == "Hi" and request.ttl_seconds == 60
    assert request.answer.text == "Open Settings." and request.answer.metadata["source"] == "faq"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ([1, 2], "an entry is a JSON object"),
        ({"answer": "x"}, "prompt: a non-empty string is required"),
        ({"prompt": "  ", "answer": "x"}, "prompt: a non-empty string is required"),
        ({"prompt": "p"}, "answer: a string or an object"),
        ({"prompt": "p", "answer": "x", "sytem_prompt": "typo"}, "unknown field(s) sytem_prompt"),
        ({"prompt": "p", "answer": "x", "params": {"temperature": "hot"}}, "scope:"),
        ({"prompt": "p", "answer": {"txt": "x"}}, "answer:"),
        ({"prompt": "p", "answer": "x", "ttl_seconds": 1.5}, "ttl_seconds: a whole number"),
        ({"prompt": "p", "answer": "x", "metadata": {"n": 1}}, "metadata: an object of strings"),
        ({"prompt": "p", "answer": "x", "namespace": "0" * 32}, "namespace: the scope given"),
    ],
)
def test_an_entry_that_is_not_one_says_which_field_is_wrong(entry: object, message: str) -> None:
    with pytest.raises(bulk.EntryFormatError) as raised:
        bulk.store_request(entry)
    assert message in str(raised.value)


def test_an_exported_entry_reads_back_into_its_own_namespace() -> None:
    scope = cache_pb2.Scope(
        tenant="acme",
        model="m",
        system_prompt=SYSTEM,
        params=cache_pb2.GenerationParams(temperature=0.0, seed=3, extra={"effort": '"high"'}),
        history=[cache_pb2.Turn(role="user", content="earlier")],
    )
    exported = cache_pb2.ExportedEntry(
        entry_id=f"{keys.namespace_key(scope)}.0123456789abcdef",
        namespace=keys.namespace_key(scope),
        scope=scope,
        tenant="acme",
        prompt="Why is the sky blue?",
        answer=cache_pb2.Answer(text="Rayleigh scattering.", chunks=["Rayleigh ", "scattering."]),
        category="factual",
        ttl_seconds=99,
    )
    line = json.loads(json.dumps(bulk.entry_of(exported)))  # through JSON text, as a file
    request = bulk.store_request(line)
    assert keys.namespace_key(request.scope) == exported.namespace
    assert request.answer == exported.answer and request.ttl_seconds == 99
    # Without its scope (stored before scopes were kept) it is refused, not misplaced.
    exported.ClearField("scope")
    with pytest.raises(bulk.EntryFormatError, match="namespace: the scope given"):
        bulk.store_request(bulk.entry_of(exported))


async def semcache(*args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "semcache.cli",
        *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else None,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(stdin), 120)
    return process.returncode or 0, out.decode(), err.decode()


def key_of(entry: dict) -> tuple[str, str, str]:
    return entry["namespace"], entry["prompt"], entry["answer"]["text"]


async def test_import_then_export_round_trips_and_a_second_import_doubles_nothing(
    embedder_address, redis_server, tenant, tmp_path: Path
) -> None:
    wanted = entries(tenant)
    lines = [json.dumps(e) for e in wanted]
    lines.insert(3, "{not json")
    lines.insert(7, json.dumps({"tenant": tenant, "prompt": "no answer here"}))
    lines.insert(9, json.dumps({"tenant": tenant, "prompt": "p", "answer": "a", "ttl_seconds": -5}))
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(lines) + "\n")
    async with mesh(embedder_address, redis_server.url, shards=2) as m:
        where = ["--address", m["address"]]
        code, out, err = await semcache("import", str(source), *where, "--json")
        assert code == 1, err  # some lines failed
        summary = json.loads(out)
        assert (summary["stored"], summary["new"], summary["failed"]) == (30, 30, 3)
        failures = "\n".join(summary["failures"])
        assert "line 4: not JSON" in failures
        assert "line 8: INVALID_ARGUMENT: answer: a string or an object" in failures
        assert "line 10: INVALID_ARGUMENT: ttl_seconds" in failures  # the server's check

        # Entries landed on both shards, and a paraphrase of an imported prompt hits.
        hit = await m["cache"].Lookup(
            cache_pb2.LookupRequest(
                scope=cache_pb2.Scope(tenant=tenant),
                prompt="What's fact number 3 about comets?",
            )
        )
        assert hit.cache.status == HIT and hit.answer.text == "comets 3"

        exported = tmp_path / "out.jsonl"
        code, _, err = await semcache("export", *where, "--tenant", tenant, "-o", str(exported))
        assert code == 0, err and "exported 30 entries of 3 namespaces" in err
        got = [json.loads(line) for line in exported.read_text().splitlines()]
        assert len(got) == 30 and len({key_of(e) for e in got}) == 30
        for entry in got:  # each re-reads into the namespace it came from
            assert keys.namespace_key(bulk.store_request(entry).scope) == entry["namespace"]
        ids = {e["entry_id"] for e in got}

        # Run again: nothing is stored twice, nothing re-embedded, the ids stay.
        code, out, err = await semcache("import", str(source), *where, "--json")
        summary = json.loads(out)
        assert (summary["unchanged"], summary["new"], summary["replaced"]) == (30, 0, 0)
        code, _, err = await semcache("export", *where, "--tenant", tenant, "-o", str(exported))
        again = [json.loads(line) for line in exported.read_text().splitlines()]
        assert {e["entry_id"] for e in again} == ids

        # The export, emptied out and imported back, is the same cache.
        await m["cache"].Invalidate(
            cache_pb2.InvalidateRequest(
                scope=cache_pb2.Scope(tenant=tenant),
                target=cache_pb2.InvalidateRequest.TARGET_TENANT,
            )
        )
        async with AsyncClient(m["address"], tenant=tenant) as client:
            assert [e async for e in client.export()] == []
            results = [r async for r in client.import_entries(got, window=4)]
            assert all(r.error is None for r in results) and len(results) == 30
            back = [e async for e in client.export()]
        assert sorted(map(key_of, back)) == sorted(map(key_of, got))


async def test_a_tenant_token_imports_and_exports_only_its_own_tenant(
    embedder_address, redis_server, tenant, tmp_path: Path
) -> None:
    other = f"{tenant}-other"
    tokens = token_file(tmp_path, f"sk-mine {tenant}\nsk-theirs {other}\nsk-ops *\n")
    async with mesh(embedder_address, redis_server.url, shards=2, tokens_file=tokens) as m:
        mine = [*entries(tenant)[:4], {"tenant": other, "prompt": "theirs?", "answer": "no"}]
        async with AsyncClient(m["address"], token="sk-mine") as client:
            results = sorted([r async for r in client.import_entries(mine)], key=lambda r: r.index)
            assert [r.error is None for r in results] == [True] * 4 + [False]
            assert isinstance(results[4].error, PermissionDeniedError)
            assert len([e async for e in client.export()]) == 4  # the token's tenant
            with pytest.raises(PermissionDeniedError):
                [e async for e in client.export(tenant=other)]
            with pytest.raises(PermissionDeniedError):
                [e async for e in client.export(all_tenants=True)]
        async with AsyncClient(m["address"], token="sk-ops") as ops:
            everyone = [e async for e in ops.export(all_tenants=True)]
            assert sum(e["tenant"] == tenant for e in everyone) == 4
            assert len([e async for e in ops.export(tenant=tenant)]) == 4


async def test_export_checks_its_request(embedder_address, redis_server) -> None:
    async with mesh(embedder_address, redis_server.url, shards=1) as m:
        call = m["cache"].Export(cache_pb2.ExportRequest(namespace="not-a-key"))
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            [batch async for batch in call]
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "namespace" in (raised.value.details() or "")


async def test_a_shard_exports_what_it_holds_without_redis_and_refuses_while_redis_is_down(
    embedder_address, tenant
) -> None:
    redis = LocalRedis(free_port())
    redis.start()
    try:
        async with (
            running_shard(shard_config(embedder=embedder_address)) as (memory_only, _),
            running_shard(shard_config(embedder=embedder_address, redis=redis.url)) as (
                backed,
                _,
            ),
        ):
            for server in (memory_only, backed):
                async with AsyncClient(server.address, tenant=tenant) as client:
                    results = [r async for r in client.import_entries(entries(tenant)[:6])]
                    assert all(r.error is None for r in results)
                    assert len([e async for e in client.export()]) == 6
            redis.stop()
            async with AsyncClient(backed.address, tenant=tenant) as client:
                with pytest.raises(UnavailableError, match="redis"):
                    [e async for e in client.export()]
    finally:
        redis.stop()


async def test_an_import_waits_its_turn_for_the_embedder(embedder_address, tenant) -> None:
    """However many entries an import has in flight, a shard embeds a few at a time: a
    flood would queue at the embedder past its timeout and store entries without vectors."""
    async with running_shard(shard_config(embedder=embedder_address)) as (server, shard):
        embed, running, most = shard.embedder.embed, 0, 0

        async def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
            nonlocal running, most
            running += 1
            most = max(most, running)
            try:
                return await embed(*args, **kwargs)
            finally:
                running -= 1

        shard.embedder.embed = counted  # type: ignore[method-assign]
        many = [
            {"tenant": tenant, "prompt": f"Which moon of Jupiter is number {i}?", "answer": str(i)}
            for i in range(4 * BULK_EMBEDS)
        ]
        async with AsyncClient(server.address, tenant=tenant) as client:
            results = [r async for r in client.import_entries(many, window=len(many))]
        assert all(r.error is None for r in results)
        assert 1 < most <= BULK_EMBEDS
        assert shard.reembed_pending() == 0  # every entry has its vector
