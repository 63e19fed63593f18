"""deploy/grafana and deploy/prometheus hold to what the services export.

Every metric named in the dashboard's and the alerts' PromQL is a sample name the real
services export (router, shard and embedder in-process, scraped over HTTP after a miss, hits,
a Store and a wrong-hit Feedback), with the labels the expressions select and group on; the
dashboard is a Grafana model that loads; promtool checks the rules, runs their unit tests
(deploy/prometheus/rules_test.yaml), parses the dashboard's PromQL and checks the scrape
config; the scrape config's relabeling, applied to the pods of the rendered manifests, finds
exactly each component's metrics port.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
import yaml
from prometheus_client.parser import text_string_to_metric_families

from cache_svc.llm import EchoBackend
from cache_svc.service import running_shard
from router_svc.service import running_router
from semcache.dev.localredis import LocalRedis
from semcache.runtime.server import GrpcServer
from semcache.v1 import cache_pb2, cache_pb2_grpc
from tests.conftest import router_config, shard_config
from tests.manifests import render

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "semcache.json"
PROMETHEUS = ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS / "rules.yaml"
RULES_TEST = PROMETHEUS / "rules_test.yaml"
SCRAPE_CONFIG = PROMETHEUS / "prometheus.yaml"
K8S = ROOT / "deploy" / "k8s"
RELIABILITY = ROOT / "docs" / "reliability.md"

HIT, MISS = cache_pb2.CACHE_STATUS_HIT, cache_pb2.CACHE_STATUS_MISS
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}

#: Series Prometheus makes itself for every target, not exported by a service.
SCRAPE_SERIES = {"up"}

# --- reading PromQL -----------------------------------------------------------------------

_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GRAFANA_VARIABLE = re.compile(r"\$\{?\w+\}?")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_OFFSET = re.compile(r"\boffset\s+-?\w+")
_IDENTIFIER = re.compile(r"(?<![\w:.])([a-zA-Z_:][\w:]*)\s*(\()?")
_SELECTOR = re.compile(r"([a-zA-Z_:][\w:]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(r'([a-zA-Z_]\w*)\s*(=~|!~|!=|=)\s*"((?:\\.|[^"\\])*)"')
_KEYWORDS = {"and", "or", "unless", "bool", "group_left", "group_right", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects: identifiers that are neither functions,
    aggregations, keywords, labels (matchers, grouping) nor Grafana variables, plus anything
    that looks like `semcache_...` wherever it stands."""
    bare = _STRING.sub('""', expr)
    bare = _MATCHERS.sub(" ", bare)
    bare = _RANGE.sub(" ", bare)
    bare = _GRAFANA_VARIABLE.sub(" ", bare)
    bare = _GROUPING.sub(" ", bare)
    bare = _OFFSET.sub(" ", bare)
    names = {m[1] for m in _IDENTIFIER.finditer(bare) if not m[2]} - _KEYWORDS
    return names | set(re.findall(r"\bsemcache_[a-z0-9_]+", expr))


def selected_labels(expr: str) -> Iterator[tuple[str, str]]:
    """(metric, label) for every label matcher in the expression."""
    for selector in _SELECTOR.finditer(expr):
        for matcher in _MATCHER.finditer(selector[2]):
            yield selector[1], matcher[1]


def grouping_labels(expr: str) -> set[str]:
    """Labels named in by/without/on/ignoring/group_left/group_right clauses."""
    bare = _MATCHERS.sub(" ", _STRING.sub('""', expr))
    return {label.strip() for m in _GROUPING.finditer(bare) for label in m[2].split(",")} - {""}


# --- what the dashboard and the rules say -------------------------------------------------


def load_dashboard(text: str | None = None) -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text() if text is None else text)


def all_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, those inside (collapsed) rows too."""
    found = []
    for panel in dashboard.get("panels", []):
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def _variable_query(variable: dict[str, Any]) -> str:
    query = variable.get("query")
    return query.get("query", "") if isinstance(query, dict) else str(query or "")


def dashboard_expressions(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and query variable."""
    found = []
    for panel in all_panels(dashboard):
        for target in panel.get("targets", []):
            found.append((f"panel {panel.get('title')!r} {target.get('refId')}", target["expr"]))
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = _variable_query(variable)
            # label_values(<selector>, <label>): the selector is PromQL, the label is not.
            inner = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", query, re.S)
            found.append((f"variable {variable['name']}", inner[1] if inner else query))
    return found


def load_rules(text: str | None = None) -> list[dict[str, Any]]:
    loaded = yaml.safe_load(RULES.read_text() if text is None else text)
    return [rule for group in loaded["groups"] for rule in group["rules"]]


def rule_expressions(rules: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(f"rule {r.get('alert') or r.get('record')}", r["expr"]) for r in rules]


def scrape_config() -> dict[str, Any]:
    return yaml.safe_load(SCRAPE_CONFIG.read_text())


def semcache_job() -> dict[str, Any]:
    (job,) = [j for j in scrape_config()["scrape_configs"] if j["job_name"] == "semcache"]
    return job


def target_labels() -> set[str]:
    """Labels Prometheus gives every target of the semcache job (not exported by services)."""
    relabel = semcache_job()["relabel_configs"]
    added = {r["target_label"] for r in relabel if "target_label" in r}
    return {label for label in added if not label.startswith("__")} | {"job", "instance"}


# --- what the services export -------------------------------------------------------------

#: exported sample name -> the label names its samples carry
Exported = dict[str, set[str]]


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        return reply.read().decode()


def parse_exposition(texts: list[str]) -> Exported:
    exported: Exported = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                exported.setdefault(sample.name, set()).update(sample.labels)
    return exported


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def exported(embedder_server: GrpcServer, redis_server: LocalRedis) -> Exported:
    """The union of what the embedder's, a shard's and a router's metrics ports serve after
    a miss, an exact and a semantic hit, a Store and a wrong-hit Feedback through the
    router (one process, one registry: each port serves every service's metrics)."""
    assert embedder_server.metrics_port is not None
    tenant = f"t-{uuid.uuid4().hex[:12]}"
    scope = cache_pb2.Scope(tenant=tenant)
    async with contextlib.AsyncExitStack() as stack:
        shard, _ = await stack.enter_async_context(
            running_shard(
                shard_config(
                    embedder=embedder_server.address, redis=redis_server.url, metrics_port=0
                ),
                llm=EchoBackend(),
            )
        )
        router, _ = await stack.enter_async_context(
            running_router(router_config(shards=shard.address, metrics_port=0))
        )
        channel = await stack.enter_async_context(grpc.aio.insecure_channel(router.address))
        cache = cache_pb2_grpc.SemanticCacheStub(channel)

        async def complete(prompt: str) -> cache_pb2.CompleteResponse:
            return await cache.Complete(cache_pb2.CompleteRequest(scope=scope, prompt=prompt))

        miss = await complete("How do I renew my passport?")
        exact = await complete("How do I renew my passport?")
        semantic = await complete("How can I renew my passport?")
        assert (miss.cache.status, exact.cache.status, semantic.cache.status) == (MISS, HIT, HIT)
        await cache.Store(
            cache_pb2.StoreRequest(
                scope=scope,
                prompt="What is the capital of France?",
                answer=cache_pb2.Answer(text="Paris."),
            )
        )
        feedback = await cache.Feedback(
            cache_pb2.FeedbackRequest(
                scope=scope,
                entry_id=semantic.cache.entry_id,
                verdict=cache_pb2.FeedbackRequest.VERDICT_WRONG_HIT,
                prompt="How can I renew my passport?",
            )
        )
        assert feedback.removed
        ports = [embedder_server.metrics_port, shard.metrics_port, router.metrics_port]
        assert None not in ports
        texts = [await asyncio.to_thread(scrape, port) for port in ports]
    return parse_exposition(texts)


def unknown_names(expressions: list[tuple[str, str]], exported: Exported) -> list[str]:
    """What the expressions name that is not exported (as a sample name), or selects or
    groups by a label the named metrics do not carry."""
    extra = target_labels()
    errors = []
    for where, expr in expressions:
        names = metric_names(expr)
        for name in sorted(names - set(exported) - SCRAPE_SERIES):
            errors.append(f"{where}: {name} is not exported")
        for name, label in selected_labels(expr):
            if name in SCRAPE_SERIES:
                have = extra
            elif name in exported:
                have = exported[name] | extra
            else:
                continue  # reported above
            if label not in have:
                errors.append(f"{where}: {name} has no label {label!r}")
        labels = set(extra).union(*(exported.get(n, set()) for n in names))
        for label in sorted(grouping_labels(expr) - labels):
            errors.append(f"{where}: groups by {label!r}, which no metric here carries")
    return errors


# --- the metric names ---------------------------------------------------------------------


def test_every_metric_the_dashboard_names_is_exported(exported: Exported) -> None:
    expressions = dashboard_expressions(load_dashboard())
    assert len(expressions) > 20
    assert unknown_names(expressions, exported) == []


def test_every_metric_the_alerts_name_is_exported(exported: Exported) -> None:
    expressions = rule_expressions(load_rules())
    assert len(expressions) >= 10
    assert unknown_names(expressions, exported) == []


BREAKAGES = {
    # what is broken: (text in the file, replacement, what the error says)
    "a misspelt metric": (
        "semcache_redis_backlog{",
        "semcache_redis_backlogg{",
        "semcache_redis_backlogg is not exported",
    ),
    "a family name, not a sample name": (
        "semcache_wrong_hits_total{",
        "semcache_wrong_hits{",
        "semcache_wrong_hits is not exported",
    ),
    "a histogram without its _bucket": (
        "semcache_stage_seconds_bucket{",
        "semcache_stage_seconds{",
        "semcache_stage_seconds is not exported",
    ),
    "a misspelt label": ('{result="hit"', '{reslt="hit"', "has no label 'reslt'"),
    "grouping by a label nobody has": ("sum by (kind)", "sum by (knd)", "groups by 'knd'"),
}


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_a_broken_dashboard_is_caught(breakage: str, exported: Exported) -> None:
    text, replacement, expected = BREAKAGES[breakage]
    original = DASHBOARD.read_text()
    # The dashboard's JSON escapes the quotes inside expressions.
    text, replacement = (json.dumps(s)[1:-1] for s in (text, replacement))
    assert text in original, f"the dashboard no longer holds {text!r}"
    broken = load_dashboard(original.replace(text, replacement, 1))
    errors = unknown_names(dashboard_expressions(broken), exported)
    assert any(expected in e for e in errors), errors


def test_a_broken_rule_is_caught(exported: Exported) -> None:
    broken = RULES.read_text().replace(
        "semcache_embedder_circuit_open)", "semcache_embedder_circuit_opened)", 1
    )
    errors = unknown_names(rule_expressions(load_rules(broken)), exported)
    assert any("semcache_embedder_circuit_opened is not exported" in e for e in errors), errors


def test_the_promql_reader_finds_names_and_nothing_else() -> None:
    expr = (
        'sum by (kind) (rate(semcache_lookups_total{result="hit", pod=~"$pod"}[$__rate_interval]))'
        " / on () group_left () sum(rate(x_total[5m] offset 1d))"
        ' and histogram_quantile(0.99, sum by (le) (rate(y_bucket{a="b"}[5m]))) > 1e3'
        ' or label_replace(up{job="semcache"}, "dst", "$1", "src", "(.*)") == bool 1'
    )
    assert metric_names(expr) == {"semcache_lookups_total", "x_total", "y_bucket", "up"}
    assert set(selected_labels(expr)) == {
        ("semcache_lookups_total", "result"),
        ("semcache_lookups_total", "pod"),
        ("y_bucket", "a"),
        ("up", "job"),
    }
    assert grouping_labels(expr) == {"kind", "le"}


# --- the dashboard as a Grafana model ----------------------------------------------------


def test_the_dashboard_is_a_loadable_grafana_model() -> None:
    dashboard = load_dashboard()
    assert dashboard["schemaVersion"] == 39
    assert dashboard["uid"] and dashboard["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name, variable in variables.items():
        if variable["type"] == "query":
            assert variable["datasource"] == DATASOURCE, name
            assert _variable_query(variable), name

    panels = all_panels(dashboard)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), f"panel ids repeat: {ids}"
    used_variables: set[str] = set()
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        title = panel.get("title")
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, title
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{title!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = title
        if panel["type"] == "row":
            continue
        assert panel["type"] in {"timeseries", "stat", "state-timeline", "gauge", "table"}, title
        assert panel["datasource"] == DATASOURCE, title
        targets = panel["targets"]
        assert targets, f"{title!r} has no targets"
        ref_ids = [t["refId"] for t in targets]
        assert len(ref_ids) == len(set(ref_ids)), title
        for target in targets:
            assert target["datasource"] == DATASOURCE, title
            assert isinstance(target["expr"], str) and target["expr"].strip(), title
            used_variables |= set(re.findall(r"\$(\w+)", target["expr"]))
    grafana_builtins = {"__rate_interval", "__range", "__interval"}
    assert used_variables - grafana_builtins <= set(variables), used_variables
    assert {"namespace", "pod"} <= used_variables


def test_the_dashboard_shows_what_an_operator_needs() -> None:
    exprs = " ".join(e for _, e in dashboard_expressions(load_dashboard()))
    for metric in (
        "semcache_lookups_total",
        "semcache_wrong_hits_total",
        "semcache_stage_seconds_bucket",
        "semcache_redis_backlog",
        "semcache_redis_up",
        "semcache_embed_queue_depth",
        "semcache_embed_batch_size_bucket",
        "semcache_embedder_circuit_open",
        "semcache_ring_healthy_shards",
        "semcache_shard_ejections_total",
        "semcache_llm_calls_total",
        "semcache_overload_refused_total",
    ):
        assert metric in exprs, metric
    for quantile in ("histogram_quantile(0.5,", "histogram_quantile(0.99,"):
        assert quantile in exprs


# --- the rules ----------------------------------------------------------------------------


def _anchors(markdown: str) -> set[str]:
    """GitHub's anchors for a document's headings."""
    anchors = set()
    for line in markdown.splitlines():
        if heading := re.match(r"#+\s+(.*)", line):
            text = re.sub(r"[^\w\- ]", "", heading[1].strip().lower())
            anchors.add(text.replace(" ", "-"))
    return anchors


def test_every_alert_has_a_for_a_severity_and_a_runbook_that_exists() -> None:
    anchors = _anchors(RELIABILITY.read_text())
    alerts = [r for r in load_rules() if "alert" in r]
    names = [a["alert"] for a in alerts]
    assert len(names) == len(set(names))
    for alert in alerts:
        name = alert["alert"]
        assert "for" in alert, name
        assert alert["labels"]["severity"] in {"critical", "warning"}, name
        annotations = alert["annotations"]
        assert annotations["summary"] and annotations["description"], name
        doc, _, anchor = annotations["runbook"].partition("#")
        assert doc == "docs/reliability.md" and anchor in anchors, (name, annotations["runbook"])
    for needed in (
        "SemcacheRouterDown",
        "SemcacheShardsDown",
        "SemcacheRedisBacklogGrowing",
        "SemcacheHitRatioCollapse",
        "SemcacheEmbedderSaturated",
        "SemcacheShardEjected",
        "SemcacheEmbedderCircuitOpen",
    ):
        assert needed in names, needed


def test_the_job_the_rules_and_dashboard_select_is_the_scrape_configs() -> None:
    job = semcache_job()["job_name"]
    expressions = rule_expressions(load_rules()) + dashboard_expressions(load_dashboard())
    for where, expr in expressions:
        for value in re.findall(r'\bjob\s*=~?\s*"([^"]*)"', expr):
            assert value == job, where


# --- promtool -----------------------------------------------------------------------------


def promtool() -> str:
    """promtool's path (`make test` puts it beside the venv's python); a test that needs
    it fails (not skips) without it."""
    found = shutil.which(
        "promtool",
        path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    )
    if found is None:
        pytest.fail("promtool is missing: `make test` installs it (or apt-get install prometheus)")
    return found


def run(*args: str | Path, cwd: Path = PROMETHEUS) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def test_promtool_checks_the_rules() -> None:
    done = run(promtool(), "check", "rules", RULES)
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_runs_the_rules_unit_tests() -> None:
    done = run(promtool(), "test", "rules", RULES_TEST)
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_parses_the_dashboards_promql(tmp_path: Path) -> None:
    """Each panel's expression, its Grafana variables filled in, as a recording rule."""
    values = {"__rate_interval": "1m", "__range": "1h", "__interval": "1m"}
    rules = []
    for i, (where, expr) in enumerate(dashboard_expressions(load_dashboard())):
        filled = re.sub(
            r"\$\{?(\w+)\}?", lambda m: values.get(m[1], ".*"), expr
        )  # $namespace, $pod: matchers' regexes
        rules.append({"record": f"dashboard:expr_{i}", "expr": filled, "labels": {"at": where}})
    path = tmp_path / "dashboard_rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = run(promtool(), "check", "rules", path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_rejects_bad_promql(tmp_path: Path) -> None:
    """The check above can fail."""
    path = tmp_path / "bad.yaml"
    bad = "sum by (le (rate(semcache_stage_seconds_bucket[5m]))"
    rules = [{"record": "r", "expr": bad}]
    path.write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": rules}]}))
    assert run(promtool(), "check", "rules", path).returncode != 0


def test_promtool_checks_the_scrape_config(tmp_path: Path) -> None:
    done = run(promtool(), "check", "config", SCRAPE_CONFIG)
    if "field kubernetes_sd_configs not found" in done.stdout + done.stderr:
        # Debian's promtool is built without Kubernetes service discovery: check everything
        # else (relabel regexes, rule_files and the rules) with the discovery swapped for a
        # static target; the discovery itself is checked below against the manifests.
        config = scrape_config()
        for job in config["scrape_configs"]:
            kubernetes = job.pop("kubernetes_sd_configs")
            assert [sd["role"] for sd in kubernetes] == ["pod"]
            job["static_configs"] = [{"targets": ["127.0.0.1:9110"]}]
        config["rule_files"] = [str(PROMETHEUS / f) for f in config["rule_files"]]
        copy = tmp_path / "prometheus.yaml"
        copy.write_text(yaml.safe_dump(config))
        done = run(promtool(), "check", "config", copy)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "rules.yaml" in done.stdout and "SUCCESS" in done.stdout, done.stdout


# --- the scrape config against the manifests ----------------------------------------------


def _go_replacement(replacement: str) -> str:
    """Prometheus's `$1`/`${1}` to Python's `\\g<1>`."""
    return re.sub(r"\$\{?(\w+)\}?", r"\\g<\1>", replacement)


def relabel(labels: dict[str, str], configs: list[dict[str, Any]]) -> dict[str, str] | None:
    """Prometheus's relabeling (keep, drop, replace), as it applies them to a target."""
    labels = dict(labels)
    for config in configs:
        action = config.get("action", "replace")
        value = config.get("separator", ";").join(
            labels.get(label, "") for label in config.get("source_labels", [])
        )
        match = re.fullmatch(config.get("regex", "(.*)"), value)
        if (action == "keep" and match is None) or (action == "drop" and match is not None):
            return None
        if action == "replace" and match is not None:
            new = match.expand(_go_replacement(config.get("replacement", "$1")))
            if new:
                labels[config["target_label"]] = new
            else:
                labels.pop(config["target_label"], None)
        elif action not in ("keep", "drop", "replace"):
            raise NotImplementedError(action)
    return labels


def _meta(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def discovered_targets(objects: list[dict[str, Any]]) -> Iterator[dict[str, str]]:
    """What Kubernetes pod discovery makes of the workloads' pods: one target per container
    port, with the meta labels Prometheus documents."""
    for o in objects:
        if o["kind"] not in ("Deployment", "StatefulSet"):
            continue
        template = o["spec"]["template"]
        name = o["metadata"]["name"] + ("-0" if o["kind"] == "StatefulSet" else "-7d9f8-x2x4z")
        base = {
            "__meta_kubernetes_namespace": o["metadata"].get("namespace", "default"),
            "__meta_kubernetes_pod_name": name,
            "__meta_kubernetes_pod_ip": "10.0.0.7",
            "__meta_kubernetes_pod_phase": "Running",
            "__metrics_path__": "/metrics",
        }
        for key, value in template["metadata"].get("labels", {}).items():
            base[f"__meta_kubernetes_pod_label_{_meta(key)}"] = value
        for key, value in template["metadata"].get("annotations", {}).items():
            base[f"__meta_kubernetes_pod_annotation_{_meta(key)}"] = value
        for container in template["spec"]["containers"]:
            for port in container.get("ports", []):
                yield base | {
                    "__address__": f"10.0.0.7:{port['containerPort']}",
                    "__meta_kubernetes_pod_container_name": container["name"],
                    "__meta_kubernetes_pod_container_port_name": port.get("name", ""),
                    "__meta_kubernetes_pod_container_port_number": str(port["containerPort"]),
                }


def _selected(target: dict[str, str], sd: dict[str, Any]) -> bool:
    """The discovery's own filter: its namespaces and label selectors."""
    namespaces = sd.get("namespaces", {}).get("names")
    if namespaces and target["__meta_kubernetes_namespace"] not in namespaces:
        return False
    for selector in sd.get("selectors", []):
        for term in selector.get("label", "").split(","):
            key, _, value = term.partition("=")
            if term and target.get(f"__meta_kubernetes_pod_label_{_meta(key)}") != value:
                return False
    return True


@pytest.mark.parametrize("overlay", ["prod", "dev"])
def test_the_scrape_config_finds_each_components_metrics_port(overlay: str) -> None:
    job = semcache_job()
    (sd,) = job["kubernetes_sd_configs"]
    assert sd["role"] == "pod"
    settings = tomllib.loads((K8S / "base" / "semcache.toml").read_text())
    objects = render(K8S / "overlays" / overlay)
    kept = [
        labels
        for target in discovered_targets(objects)
        if _selected(target, sd) and (labels := relabel(target, job["relabel_configs"]))
    ]
    by_component = {t["component"]: t for t in kept}
    assert len(kept) == len(by_component) == 3, kept  # one target per pod, Redis none
    for component, section in (("router", "router"), ("shard", "shard"), ("embedder", "embedder")):
        target = by_component[component]
        assert target["__address__"] == f"10.0.0.7:{settings[section]['metrics_port']}"
        assert target["__metrics_path__"] == "/metrics"
        assert target["namespace"] == "semcache" and target["pod"].startswith("semcache-")
