"""The dev overlay's configuration really starts the mesh: each service runs as a process
with the environment its pod gets (env, Secret keys, field refs, `$(VAR)` expansion) and the
rendered ConfigMap and Secret files at the paths the manifests mount them. Only what must
differ on a test machine is overridden: loopback addresses, free ports, the test's Redis."""

from __future__ import annotations

import base64
import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx

from semcache.client import Client
from semcache.dev.probe import free_port, wait_until_serving
from tests.manifests import Object, render

ROOT = Path(__file__).resolve().parent.parent
DEV = ROOT / "deploy" / "k8s" / "overlays" / "dev"
MOUNTS = {"/etc/semcache/config": "config", "/etc/semcache/secrets": "secrets"}


def _container(objects: dict[tuple[str, str], Object], kind: str, name: str) -> Object:
    return objects[(kind, name)]["spec"]["template"]["spec"]["containers"][0]


def pod_environment(container: Object, objects: dict, pod: str, root: Path) -> dict[str, str]:
    """The container's env as kubelet would build it, mount paths moved under `root`."""
    env: dict[str, str] = {}
    for e in container.get("env", []):
        if "value" in e:
            value = re.sub(r"\$\((\w+)\)", lambda m: env.get(m[1], m[0]), e["value"])
        elif "secretKeyRef" in e["valueFrom"]:
            ref = e["valueFrom"]["secretKeyRef"]
            data = objects[("Secret", ref["name"])].get("data", {})
            if ref["key"] not in data and ref.get("optional"):
                continue
            value = base64.b64decode(data[ref["key"]]).decode()
        else:
            value = {"metadata.name": pod, "metadata.namespace": "semcache"}[
                e["valueFrom"]["fieldRef"]["fieldPath"]
            ]
        env[e["name"]] = value
    for mount, directory in MOUNTS.items():
        env = {k: v.replace(mount, str(root / directory)) for k, v in env.items()}
    return env


def write_mounts(objects: dict, root: Path) -> None:
    """The ConfigMap and the Secret as files, as the pods see them."""
    for (kind, name), o in objects.items():
        if kind == "ConfigMap" and name.startswith("semcache-config"):
            for key, text in o["data"].items():
                for mount, directory in MOUNTS.items():
                    text = text.replace(mount, str(root / directory))
                (root / "config").mkdir(exist_ok=True)
                (root / "config" / key).write_text(text)
        if kind == "Secret" and name.startswith("semcache-secrets"):
            (root / "secrets").mkdir(exist_ok=True)
            for key, value in o["data"].items():
                (root / "secrets" / key).write_bytes(base64.b64decode(value))


@contextlib.contextmanager
def service(module: str, env: dict[str, str], health: int, log: Path) -> Iterator[None]:
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", module],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        try:
            wait_until_serving(f"127.0.0.1:{health}", timeout=60, process=process)
        except (RuntimeError, TimeoutError) as e:
            raise RuntimeError(f"{module}: {e}: {log.read_text()[-2000:]}") from None
        yield
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_the_dev_overlay_config_starts_a_working_mesh(redis_server, tmp_path) -> None:
    rendered = render(DEV)
    objects = {(o["kind"], o["metadata"]["name"]): o for o in rendered}
    # Generated names carry a hash suffix: find them by prefix.
    for (kind, name), o in list(objects.items()):
        for prefix in ("semcache-config", "semcache-secrets"):
            if name.startswith(prefix):
                objects[(kind, prefix)] = o
    write_mounts(objects, tmp_path)
    ports = {name: free_port() for name in ("embedder", "shard", "router")}
    health = {name: free_port() for name in ports}

    def environment(kind: str, name: str, section: str, pod: str) -> dict[str, str]:
        env = pod_environment(_container(objects, kind, name), objects, pod, tmp_path)
        local = {
            "HOST": "127.0.0.1",
            "PORT": str(ports[section]),
            "HEALTH_PORT": str(health[section]),
            "METRICS_PORT": "-1",
        }
        return env | {f"SEMCACHE_{section.upper()}_{k}": v for k, v in local.items()}

    embedder = environment("Deployment", "semcache-embedder", "embedder", "semcache-embedder-x")
    shard = environment("StatefulSet", "semcache-shard", "shard", "semcache-shard-0")
    router = environment("Deployment", "semcache-router", "router", "semcache-router-x")
    # What the pods get from the manifests, before the loopback overrides below:
    assert shard["SEMCACHE_SHARD_SHARD_ID"] == "semcache-shard-0"
    assert shard["SEMCACHE_SHARD_ADVERTISE"] == (
        "semcache-shard-0.semcache-shard.semcache.svc.cluster.local:50052"
    )
    assert shard["SEMCACHE_SHARD_REGISTRY"] == router["SEMCACHE_ROUTER_REGISTRY"]
    redis = redis_server.url.rsplit("/", 1)[0] + "/5"  # a database of its own
    shard |= {
        "SEMCACHE_SHARD_EMBEDDER": f"127.0.0.1:{ports['embedder']}",
        "SEMCACHE_SHARD_ADVERTISE": f"127.0.0.1:{ports['shard']}",
        "SEMCACHE_SHARD_REDIS": redis,
        "SEMCACHE_SHARD_REGISTRY": redis,
    }
    http_port = free_port()
    router |= {"SEMCACHE_ROUTER_REGISTRY": redis, "SEMCACHE_ROUTER_HTTP_PORT": str(http_port)}
    with (
        service("embed_svc", embedder, health["embedder"], tmp_path / "embedder.log"),
        service("cache_svc", shard, health["shard"], tmp_path / "shard.log"),
        service("router_svc", router, health["router"], tmp_path / "router.log"),
        Client(f"127.0.0.1:{ports['router']}", token="dev-token", timeout=30) as cache,
    ):
        first = cache.complete("How do I renew my passport?")
        hit = cache.complete("How can I renew my passport?")
        with Client(f"127.0.0.1:{ports['router']}", token="dev-operator") as operator:
            ring = operator.ring()
        # The OpenAI-compatible front the manifests turn on, with the dev token as API key.
        question = {"role": "user", "content": "How do I renew my passport?"}
        chat = httpx.post(
            f"http://127.0.0.1:{http_port}/v1/chat/completions",
            timeout=30,
            headers={"Authorization": "Bearer dev-token"},
            json={"model": "m", "messages": [question]},
        )
    assert chat.status_code == 200 and chat.headers["x-semcache"] == "miss"  # another model
    assert first.cache.status == "miss" and hit.cache.status == "hit"
    assert first.text == hit.text  # the echo backend of the dev overlay
    assert [m.id for m in ring.members] == ["semcache-shard-0"]
