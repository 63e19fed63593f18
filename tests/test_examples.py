"""The client examples in other languages (`examples/node`, `examples/go`), run as a user runs
them against a real in-process mesh (a shard with the echo LLM, a router on 127.0.0.1:0).

Each example prints one JSON line per step; these tests read them. A missing toolchain or
uninstalled example is a failure that says what to install, never a skip: `make examples`
sets up the Node example; the Go one needs Debian's Go packages (see GO_PACKAGES).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cache_svc.service import running_shard
from embed_svc.build.recipe import cache_root
from router_svc.service import running_router
from semcache.client import AsyncClient
from semcache.dev.probe import free_port
from tests.conftest import router_config, shard_config

ROOT = Path(__file__).resolve().parent.parent
PROTO = ROOT / "protos" / "semcache" / "v1" / "cache.proto"
NODE = ROOT / "examples" / "node"
GO = ROOT / "examples" / "go"
GOCODE = Path("/usr/share/gocode/src")
GO_PACKAGES = (
    "apt-get install -y golang-go golang-google-grpc-dev golang-google-protobuf-dev "
    "golang-github-golang-protobuf-1-5-dev protobuf-compiler"
)
# Debian's Go libraries, as GOPATH sources. grpc-go 1.33 marshals through
# github.com/golang/protobuf, which must be v1.5 (the one on google.golang.org/protobuf; v1.3
# builds, then panics on the first response): registry.go is v1.5's.
GO_SOURCES = (
    "google.golang.org/grpc/version.go",
    "google.golang.org/protobuf/internal/version/version.go",
    "github.com/golang/protobuf/proto/registry.go",
)
RUN_SECONDS = 60  # one run of an example: a handful of calls with 5 s deadlines each
BUILD_SECONDS = 300  # a cold Go build compiles grpc-go and the protoc plugins (~30 s)
# The first Go test builds the example in its set-up, and a test runs an example up to 3 times.
pytestmark = pytest.mark.timeout(BUILD_SECONDS + 3 * RUN_SECONDS + 60)

# The steps of a successful run, in order (both examples print the same ones).
STEPS = [
    "reset",
    "lookaside.lookup",
    "lookaside.llm",
    "lookaside.store",
    "lookaside.lookup_paraphrase",
    "lookaside.helper",
    "readthrough.complete",
    "readthrough.complete_paraphrase",
    "errors.empty_prompt",
    "done",
]


class NotReadyError(Exception):
    """What is missing to run an example, and how to install it."""


@dataclass
class Example:
    """How to run one example, or why it cannot run here (a failure of each test, not a
    skip: a missing toolchain must not pass unnoticed)."""

    argv: list[str]
    problem: str = ""

    def command(self) -> list[str]:
        if self.problem:
            pytest.fail(self.problem, pytrace=False)
        return self.argv


def node_command() -> list[str]:
    """`node examples/node/semcache-example.js`, once node and the packages are there."""
    node = shutil.which("node")
    if node is None:
        raise NotReadyError(
            "node is not on PATH: the Node example needs Node.js >= 20 with npm; install it, "
            "then run `make examples` (npm ci --prefix examples/node)"
        )
    version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30)
    major = int(version.stdout.strip().lstrip("v").split(".")[0] or 0)
    if major < 20:
        raise NotReadyError(f"node {version.stdout.strip()}: the example needs Node.js >= 20")
    missing = [
        package
        for package in ("@grpc/grpc-js", "@grpc/proto-loader")
        if not (NODE / "node_modules" / package / "package.json").is_file()
    ]
    if missing:
        raise NotReadyError(
            f"examples/node/node_modules is not installed (no {', '.join(missing)}): run "
            "`make examples` (npm ci --prefix examples/node)"
        )
    return [node, str(NODE / "semcache-example.js")]


def go_build_key() -> str:
    """What the Go build depends on: its inputs, the toolchain and the Debian sources."""
    h = hashlib.sha256()
    version = subprocess.run(["go", "version"], capture_output=True, timeout=30).stdout
    for part in (
        (GO / "main.go").read_bytes(),
        (GO / "build.sh").read_bytes(),
        PROTO.read_bytes(),
        version,
        *((GOCODE / source).read_bytes() for source in GO_SOURCES),
    ):
        h.update(len(part).to_bytes(8, "little") + part)
    return h.hexdigest()[:16]


def go_command() -> list[str]:
    """The Go example's binary, built by examples/go/build.sh, cached by its inputs."""
    missing = [tool for tool in ("go", "protoc") if shutil.which(tool) is None]
    missing += [str(GOCODE / source) for source in GO_SOURCES if not (GOCODE / source).is_file()]
    if missing:
        raise NotReadyError(
            f"the Go example needs {', '.join(missing)}: install Debian's Go packages with "
            f"`{GO_PACKAGES}`"
        )
    built = cache_root() / "go-example" / go_build_key()
    binary = built / "semcache-example"
    if not binary.is_file():
        # Built beside the cache entry and renamed into place: never a half-built entry.
        partial = built.with_name(f"{built.name}.{uuid.uuid4().hex[:8]}")
        try:
            build = subprocess.run(
                ["bash", str(GO / "build.sh"), str(partial)],
                capture_output=True,
                text=True,
                timeout=BUILD_SECONDS,
            )
            if build.returncode != 0:
                raise NotReadyError(f"examples/go/build.sh failed:\n{build.stdout}{build.stderr}")
            with contextlib.suppress(OSError):  # another run put the same build there first
                partial.rename(built)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        for stale in built.parent.iterdir():  # builds of earlier inputs: 12 MB each
            if stale != built:
                shutil.rmtree(stale, ignore_errors=True)
    return [str(binary)]


COMMANDS = {"node": node_command, "go": go_command}


@pytest.fixture(scope="session")
def prepared() -> dict[str, Example]:
    """Each example, checked (and the Go one built) at most once per session."""
    return {}


@pytest.fixture(params=list(COMMANDS))
def example(request: pytest.FixtureRequest, prepared: dict[str, Example]) -> Example:
    name = request.param
    if name not in prepared:
        try:
            prepared[name] = Example(COMMANDS[name]())
        except NotReadyError as e:
            prepared[name] = Example([], str(e))
    return prepared[name]


@contextlib.asynccontextmanager
async def mesh(
    embedder_address: str, redis_url: str, tokens_file: Path | None = None
) -> AsyncIterator[str]:
    """A shard (echo LLM) and a router in this event loop; yields the router's address."""
    async with (
        running_shard(shard_config(embedder=embedder_address, redis=redis_url)) as (shard, _),
        running_router(router_config(shards=shard.address, tokens_file=tokens_file)) as (
            router,
            _,
        ),
    ):
        yield router.address


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str

    @property
    def steps(self) -> dict[str, dict]:
        lines = [json.loads(line) for line in self.stdout.splitlines() if line.strip()]
        return {line["step"]: line for line in lines}

    def __str__(self) -> str:
        return f"exit {self.returncode}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}"


async def run(argv: list[str], **environ: str) -> Run:
    """Runs an example without blocking the event loop the mesh serves from."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEMCACHE_")} | environ
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=ROOT,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), RUN_SECONDS)
    except TimeoutError:
        process.kill()
        await process.wait()
        pytest.fail(f"{argv} did not finish within {RUN_SECONDS} s")
    return Run(process.returncode or 0, stdout.decode(), stderr.decode())


def assert_miss_then_semantic_hit(miss: dict, hit: dict) -> None:
    assert miss["status"] == "miss" and miss["kind"] is None
    assert hit["status"] == "hit" and hit["kind"] == "semantic"
    assert hit["threshold"] <= hit["similarity"] < 1.0
    assert hit["entry_id"] and hit["shard"]


def assert_the_demo_ran(result: Run) -> None:
    assert result.returncode == 0, result
    steps = result.steps
    assert list(steps) == STEPS, result
    assert steps["done"] == {"step": "done", "ok": True, "failures": []}

    lookup, stored = steps["lookaside.lookup"], steps["lookaside.store"]
    paraphrase = steps["lookaside.lookup_paraphrase"]
    assert_miss_then_semantic_hit(lookup, paraphrase)
    assert paraphrase["entry_id"] == stored["entry_id"]
    assert paraphrase["matched_prompt"] == lookup["prompt"] != paraphrase["prompt"]
    assert paraphrase["answer"] == steps["lookaside.llm"]["answer"]
    assert steps["lookaside.helper"]["from"] == "cache"

    first, second = steps["readthrough.complete"], steps["readthrough.complete_paraphrase"]
    assert_miss_then_semantic_hit(first, second)
    assert second["entry_id"] == first["entry_id"]  # the miss stored what the LLM answered
    assert second["answer"] == first["answer"] and first["prompt"] in first["answer"]  # echo

    bad = steps["errors.empty_prompt"]
    assert bad["status"] == bad["error"] == "INVALID_ARGUMENT" and bad["code"] == 3
    assert "prompt" in bad["details"]


async def test_the_example_misses_then_hits_both_ways(
    example, embedder_address, redis_server, tenant
) -> None:
    argv = example.command()
    async with mesh(embedder_address, redis_server.url) as router:
        result = await run(argv, SEMCACHE_ADDRESS=router, SEMCACHE_TENANT=tenant)
        assert_the_demo_ran(result)
        # It cleans its namespace first, so it shows the same on a second run.
        again = await run(argv, SEMCACHE_ADDRESS=router, SEMCACHE_TENANT=tenant)
        assert_the_demo_ran(again)
        assert again.steps["reset"]["removed"] == 2  # the two entries of the first run
        # What it stored is in its tenant, for any client.
        async with AsyncClient(router, tenant=tenant) as cache:
            assert (await cache.lookup("How can I renew my passport?", model="gpt-example")).hit


async def test_the_example_sends_its_token_and_a_wrong_one_is_unauthenticated(
    example, embedder_address, redis_server, tenant, tmp_path
) -> None:
    argv = example.command()
    token = f"sk-{uuid.uuid4().hex}"
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{token} {tenant}\n")
    async with mesh(embedder_address, redis_server.url, tokens) as router:
        # No tenant given: the token decides it.
        result = await run(argv, SEMCACHE_ADDRESS=router, SEMCACHE_TOKEN=token)
        assert_the_demo_ran(result)
        async with AsyncClient(router, token=token) as cache:
            found = await cache.lookup("How can I renew my passport?", model="gpt-example")
        assert found.hit and found.cache.entry_id == result.steps["lookaside.store"]["entry_id"]

        wrong = await run(argv, SEMCACHE_ADDRESS=router, SEMCACHE_TOKEN="sk-wrong")
        assert wrong.returncode == 1, wrong
        error = wrong.steps["error"]
        assert error["error"] == "UNAUTHENTICATED" and error["code"] == 16, wrong
        assert "token" in error["details"]
        assert wrong.steps["done"]["ok"] is False
        assert "refused the token" in wrong.stderr


async def test_the_example_says_when_nothing_answers(example) -> None:
    result = await run(example.command(), SEMCACHE_ADDRESS=f"127.0.0.1:{free_port()}")
    assert result.returncode == 1, result
    assert result.steps["error"]["error"] == "UNAVAILABLE"
    assert "is the mesh running?" in result.stderr
