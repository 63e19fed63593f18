"""deploy/k8s: every overlay renders, validates against the Kubernetes schemas (strict), and
fits together; a deliberately broken copy is caught; the image and config agree with the code."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import tomllib
import typing
from pathlib import Path

import pytest

from semcache.quality.policy import POLICIES_DIR, TUNED_EMBEDDER
from semcache.runtime.config import EmbedderConfig, RouterConfig, ShardConfig, _convert
from tests.manifests import check, is_mounted, render

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if p.is_dir())
#: prod's Secret is created by the operator (never committed): docs/deploy.md, with its keys.
PROD_SECRET = {("Secret", "semcache-secrets"): ("tokens", "redis-url", "openai-api-key")}
EXTERNAL = {
    "prod": PROD_SECRET,
    "external-redis": PROD_SECRET,
    "external-redis-cluster": PROD_SECRET,
}


def test_the_overlays_are_there() -> None:
    assert {"dev", "prod", "external-redis", "external-redis-cluster"} <= set(OVERLAYS)


def test_the_cluster_overlay_turns_the_cluster_protocol_on_where_redis_is_used() -> None:
    objects = render(K8S / "overlays" / "external-redis-cluster")
    assert not [o for o in objects if o["metadata"]["name"] == "semcache-redis"]
    flags = {}
    for o in objects:
        if o["kind"] in ("StatefulSet", "Deployment"):
            for container in o["spec"]["template"]["spec"]["containers"]:
                env = {e["name"]: e.get("value") for e in container.get("env", [])}
                flags[container["name"]] = {k: v for k, v in env.items() if "REDIS_CLUSTER" in k}
    assert flags["shard"] == {"SEMCACHE_SHARD_REDIS_CLUSTER": "true"}
    assert flags["router"] == {"SEMCACHE_ROUTER_REDIS_CLUSTER": "true"}
    assert flags["embedder"] == {}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_validates_and_fits_together(overlay: str) -> None:
    assert check(K8S / "overlays" / overlay, EXTERNAL.get(overlay)) == []


BREAKAGES = {
    # file, text, replacement, what the error says
    "service targets a port no container has": (
        "base/router.yaml",
        "targetPort: grpc",
        "targetPort: grcp",
        "targetPort 'grcp'",
    ),
    "selector does not match the pod labels": (
        "base/shard.yaml",
        "  selector:\n    matchLabels:\n      app.kubernetes.io/name: semcache",
        "  selector:\n    matchLabels:\n      app.kubernetes.io/name: semcash",
        "does not match its pod labels",
    ),
    "unknown field (strict schema)": (
        "base/embedder.yaml",
        "  replicas: 2\n",
        "  replicas: 2\n  replica: 2\n",
        "'replica' was unexpected",
    ),
    "container without limits": (
        "base/router.yaml",
        'limits:\n              cpu: "1"\n              memory: 512Mi\n',
        "limits: {}\n",
        "no limits for cpu, memory",
    ),
    "missing Secret key": ("base/router.yaml", "key: redis-url", "key: redis-uri", "'redis-uri'"),
    "missing ConfigMap": (
        "base/shard.yaml",
        "name: semcache-config",
        "name: semcache-confg",
        "'semcache-confg'",
    ),
    "probe on a port the container does not open": (
        "base/embedder.yaml",
        "port: 50060\n            periodSeconds: 5",
        "port: 50061\n            periodSeconds: 5",
        "50061",
    ),
    "API version that no longer exists": (
        "overlays/prod/autoscaling.yaml",
        "autoscaling/v2",
        "autoscaling/v2beta1",
        "no schema",
    ),
    "config mounted elsewhere than the env says": (
        "base/router.yaml",
        "mountPath: /etc/semcache/config",
        "mountPath: /etc/semcache/conf",
        "is under no volume mount",
    ),
    "network policy admitting pods that do not exist": (
        "base/network-policy.yaml",
        "app.kubernetes.io/component: shard\n      ports:",
        "app.kubernetes.io/component: shards\n      ports:",
        "from podSelector",
    ),
    "writable root filesystem": (
        "base/shard.yaml",
        "readOnlyRootFilesystem: true",
        "readOnlyRootFilesystem: false",
        "readOnlyRootFilesystem must be true",
    ),
}


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_a_broken_copy_is_caught(breakage: str, tmp_path: Path) -> None:
    file, text, replacement, expected = BREAKAGES[breakage]
    copy = tmp_path / "k8s"
    shutil.copytree(K8S, copy)
    path = copy / file
    original = path.read_text()
    assert text in original, f"{file} no longer holds the text this test breaks"
    path.write_text(original.replace(text, replacement, 1))
    errors = check(copy / "overlays" / "prod", PROD_SECRET)
    assert any(expected in e for e in errors), errors


def test_the_configmap_policy_is_the_tuned_models_shipped_policy() -> None:
    """The image serves the tuned model (its build runs `make model`): the ConfigMap holds
    that model's shipped policy."""
    shipped = POLICIES_DIR / f"{TUNED_EMBEDDER}.json"
    assert json.loads((K8S / "base" / "policy.json").read_text()) == json.loads(
        shipped.read_text()
    ), f"deploy/k8s/base/policy.json drifted from {shipped.name}: copy it again"


@pytest.mark.parametrize("config", [EmbedderConfig, ShardConfig, RouterConfig])
def test_the_configmap_settings_exist_parse_and_name_mounted_files(config: type) -> None:
    section = tomllib.loads((K8S / "base" / "semcache.toml").read_text())[config.SECTION]
    fields = {f.name for f in dataclasses.fields(config)}
    assert set(section) <= fields, set(section) - fields
    hints = typing.get_type_hints(config)
    for name, value in section.items():
        _convert(value, hints[name], name)  # raises ConfigError on a bad value
    (container,) = [
        c
        for o in render(K8S / "overlays" / "prod")
        if o["kind"] in ("Deployment", "StatefulSet")
        for c in o["spec"]["template"]["spec"]["containers"]
        if c["name"] == config.SECTION
    ]
    for name, value in section.items():
        if isinstance(value, str) and value.startswith("/"):
            assert is_mounted(value, container), f"{config.SECTION}.{name} = {value}"


def test_the_dockerfile_builds_with_the_make_target_ci_runs() -> None:
    # The image cannot be built here (no Docker engine): this only holds the Dockerfile to
    # the tested steps and to the services that exist.
    dockerfile = (ROOT / "Dockerfile").read_text()
    runs = [line for line in dockerfile.splitlines() if line.startswith("RUN ")]
    assert any(re.search(r"\bmake model\b", line) for line in runs), runs
    assert "HNSWLIB_NO_NATIVE=1" in dockerfile and "USER 10001" in dockerfile
    # The runtime user is the one every pod's securityContext names.
    for o in render(K8S / "overlays" / "prod"):
        if o["kind"] in ("Deployment", "StatefulSet") and o["metadata"]["name"] != "semcache-redis":
            assert o["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 10001
    for service in ("router_svc", "cache_svc", "embed_svc"):
        assert (ROOT / service / "__main__.py").exists()


def test_the_tls_component_turns_tls_on_in_prod(tmp_path: Path) -> None:
    copy = tmp_path / "k8s"
    shutil.copytree(K8S, copy)
    overlay = copy / "overlays" / "prod-tls"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        "resources: [../prod]\ncomponents: [../../components/tls]\n"
    )
    tls_secret = {("Secret", "semcache-tls"): ("tls.crt", "tls.key", "ca.crt")}
    assert check(overlay, PROD_SECRET | tls_secret) == []
    env = {
        o["metadata"]["name"]: {
            e["name"] for e in o["spec"]["template"]["spec"]["containers"][0]["env"]
        }
        for o in render(overlay)
        if o["kind"] in ("Deployment", "StatefulSet") and o["metadata"]["name"] != "semcache-redis"
    }
    assert "SEMCACHE_ROUTER_TLS_CERT" in env["semcache-router"]
    assert "SEMCACHE_ROUTER_TLS_CLIENT_AUTH" not in env["semcache-router"]  # callers use tokens
    assert {"SEMCACHE_SHARD_TLS_CA", "SEMCACHE_SHARD_TLS_CLIENT_AUTH"} <= env["semcache-shard"]
    assert "SEMCACHE_EMBEDDER_TLS_CLIENT_AUTH" in env["semcache-embedder"]
    # Without the Secret, the checker says so.
    assert any("semcache-tls" in e for e in check(overlay, PROD_SECRET))
