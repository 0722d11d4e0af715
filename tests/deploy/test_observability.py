"""The observability profile: Prometheus scrapes both tiers where they export, Grafana is
provisioned with a datasource and the dashboard, and every dashboard query asks for metrics the
tiers really export. Validated offline (no Docker, no Prometheus server here): structure, the
compose wiring, the metric names against the logic tier's own registry and the agreed names."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from tests.deploy.dockerfiles import ROOT

OBS = ROOT / "deploy" / "observability"
DASHBOARD = OBS / "grafana" / "dashboards" / "tiered-serving-kit.json"
DATASOURCES = OBS / "grafana" / "provisioning" / "datasources" / "prometheus.yaml"
PROVIDERS = OBS / "grafana" / "provisioning" / "dashboards" / "tiered-serving-kit.yaml"
PROMETHEUS = OBS / "prometheus.yml"

# Metric families each tier exports (PLAN's shared names; TF Serving's own for the graph tier).
LOGIC_METRICS = {
    "logic_requests_total": "counter",
    "logic_request_seconds": "histogram",
    "logic_pipeline_engine": "gauge",
    "logic_batch_rows": "histogram",
    "logic_batch_queue_wait_seconds": "histogram",
    "logic_graph_calls_total": "counter",
    "logic_graph_breaker_state": "gauge",
    # Traffic between versions (logic_service/traffic/metrics.py).
    "logic_routed_requests_total": "counter",
    "logic_sticky_fallbacks_total": "counter",
    "logic_shadow_jobs_total": "counter",
    "logic_shadow_score_diff": "histogram",
    "logic_shadow_decisions_total": "counter",
    "logic_traffic_generation": "gauge",
    "logic_traffic_reloads_total": "counter",
}
GRAPH_METRICS = {
    ":tensorflow:serving:request_count": "counter",
    ":tensorflow:serving:request_latency": "histogram",
    ":tensorflow:cc:saved_model:load_attempt_count": "counter",
    # graph-service (the stand-in) only:
    "graph_config_reload_errors_total": "counter",
    "graph_model_inflight_calls": "gauge",
}
MUST_SHOW = set(LOGIC_METRICS) - {"logic_graph_calls_total"} | {
    ":tensorflow:serving:request_count",
    ":tensorflow:serving:request_latency",
}
PROMQL_WORDS = {
    "sum", "by", "rate", "increase", "histogram_quantile", "max", "min", "avg", "without",
    "le", "on", "ignoring", "and", "or", "unless",
}  # fmt: skip


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def queries(dashboard: dict) -> list[str]:
    return [
        target["expr"]
        for panel in dashboard["panels"]
        if panel["type"] != "row"
        for target in panel["targets"]
    ]


def metric_names(expr: str) -> set[str]:
    """Series selectors of a PromQL expression: names not followed by `(` and not a keyword,
    label name, string, duration or Grafana variable."""
    text = re.sub(r'"[^"]*"', '""', expr)  # label values
    text = re.sub(r"\{[^}]*\}", "{}", text)  # label matchers
    text = re.sub(r"\$__\w+", "", text)
    text = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", text)  # grouping labels
    names = set()
    for match in re.finditer(r"(?<![\w:.])[a-zA-Z_:][\w:]*", text):
        word = match.group(0)
        if text[match.end() :].lstrip().startswith("("):
            continue  # a function or aggregation
        if word not in PROMQL_WORDS and not re.fullmatch(r"\d+[smhd]", word):
            names.add(word)
    return names


def family(series: str, known: dict[str, str]) -> str | None:
    if series in known:
        return series
    for suffix in ("_bucket", "_sum", "_count"):
        base = series.removesuffix(suffix)
        if base != series and known.get(base) == "histogram":
            return base
    return None


def test_dashboard_is_a_provisionable_grafana_dashboard(dashboard: dict) -> None:
    assert dashboard["uid"] and dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int)
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    cells = set()
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps another panel"
                cells.add((x, y))


def test_every_panel_queries_the_provisioned_datasource(dashboard: dict) -> None:
    (source,) = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        for target in [panel, *panel["targets"]]:
            assert target["datasource"] == {"type": source["type"], "uid": source["uid"]}
        for target in panel["targets"]:
            assert target["expr"].strip() and target["refId"]


@pytest.mark.parametrize("expr", queries(json.loads(DASHBOARD.read_text())))
def test_query_is_balanced_and_uses_only_exported_metrics(expr: str) -> None:
    for opening, closing in ("()", "[]", "{}"):
        depth = 0
        for char in expr:
            depth += (char == opening) - (char == closing)
            assert depth >= 0, f"unbalanced {opening}{closing} in {expr}"
        assert depth == 0, f"unbalanced {opening}{closing} in {expr}"
    assert set(re.findall(r"\$\w+", expr)) <= {"$__rate_interval", "$__range"}
    known = {**LOGIC_METRICS, **GRAPH_METRICS, "up": "gauge"}
    names = metric_names(expr)
    assert names, expr
    for name in names:
        base = family(name, known)
        assert base, f"{name} is not a metric either tier exports ({expr})"
        if known[base] == "histogram":
            assert name != base, f"histogram {base} needs _bucket/_sum/_count"
        if known[base] == "counter":
            assert re.search(rf"(rate|increase)\(\s*{re.escape(name)}\b", expr), (
                f"counter {name} must be read through rate() or increase()"
            )


def test_metric_name_parser_finds_series_and_skips_labels() -> None:
    expr = 'sum by (pipeline, status) (rate(logic_requests_total{status!~"2.."}[5m])) / up'
    assert metric_names(expr) == {"logic_requests_total", "up"}
    assert metric_names("rate(:tensorflow:serving:request_count[$__rate_interval])") == {
        ":tensorflow:serving:request_count"
    }


def test_dashboard_shows_rate_latency_batching_breaker_engine_and_graph_metrics(
    dashboard: dict,
) -> None:
    shown = {
        family(n, {**LOGIC_METRICS, **GRAPH_METRICS})
        for e in queries(dashboard)
        for n in metric_names(e)
    }
    assert shown >= MUST_SHOW


def test_logic_metric_types_match_the_logic_tiers_registry() -> None:
    """The names the logic tier registers today have the type the dashboard assumes."""
    from logic_service.metrics import Metrics
    from logic_service.traffic.metrics import TrafficMetrics

    metrics = Metrics()
    TrafficMetrics(metrics.registry)  # the Scorer registers these in the same registry
    registered = {metric.name: metric.type for metric in metrics.registry.collect()}
    assert registered, "the logic tier registers no metrics"
    for name, kind in registered.items():
        exported = name + "_total" if kind == "counter" else name
        if exported in LOGIC_METRICS:
            assert LOGIC_METRICS[exported] == kind, name
    exported = {name + "_total" if kind == "counter" else name for name, kind in registered.items()}
    assert {"logic_requests_total", "logic_request_seconds"} <= exported
    assert set(LOGIC_METRICS) <= exported, "the dashboard names a metric nobody registers"


def test_traffic_row_shows_each_version_and_the_shadow_comparison_per_version_pair(
    dashboard: dict,
) -> None:
    rows = [p for p in dashboard["panels"] if p["type"] == "row"]
    assert [r["title"] for r in rows] == ["Logic tier", "Traffic between versions", "Graph tier"]
    start, end = (r["gridPos"]["y"] for r in rows[1:])
    traffic = [
        p for p in dashboard["panels"] if p["type"] != "row" and start < p["gridPos"]["y"] < end
    ]
    exprs = [t["expr"] for p in traffic for t in p["targets"]]
    assert any("by (pipeline, version)" in e and "logic_routed_requests_total" in e for e in exprs)
    for family in (
        "logic_shadow_score_diff",
        "logic_shadow_decisions_total",
        "logic_shadow_jobs_total",
    ):
        shown = [e for e in exprs if family in e]
        assert shown and all("pipeline, primary, shadow" in e for e in shown), family


def test_prometheus_scrapes_both_tiers_where_they_export(compose: dict) -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"logic", "graph"}
    monitoring = (ROOT / "deploy" / "tfserving" / "monitoring_config.txt").read_text()
    assert f'path: "{jobs["graph"]["metrics_path"]}"' in monitoring
    app = (ROOT / "logic_service" / "app.py").read_text()
    assert f'@routes.get("{jobs["logic"]["metrics_path"]}")' in app
    ports = {"logic": "5000", "graph": "8501"}
    for name, job in jobs.items():
        (target,) = [t for group in job["static_configs"] for t in group["targets"]]
        host, port = target.split(":")
        assert host in compose["services"], f"{host} is not a compose service"
        assert port == ports[name]
    assert re.fullmatch(r"\d+s", config["global"]["scrape_interval"])


def _mounts(service: dict) -> dict[str, str]:
    return {v.split(":")[1]: v.split(":")[0] for v in service["volumes"]}


def test_compose_provisions_grafana_with_this_datasource_and_dashboard(compose: dict) -> None:
    services = compose["services"]
    prometheus, grafana = services["prometheus"], services["grafana"]
    config_arg = next(a for a in prometheus["command"] if a.startswith("--config.file="))
    assert (ROOT / _mounts(prometheus)[config_arg.split("=", 1)[1]]) == PROMETHEUS
    (source,) = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    assert source["url"] == "http://prometheus:9090"
    grafana_mounts = _mounts(grafana)
    provisioning = ROOT / grafana_mounts["/etc/grafana/provisioning"]
    assert DATASOURCES.is_relative_to(provisioning) and PROVIDERS.is_relative_to(provisioning)
    (provider,) = yaml.safe_load(PROVIDERS.read_text())["providers"]
    dashboards_dir = provider["options"]["path"]
    assert ROOT / grafana_mounts[dashboards_dir] == DASHBOARD.parent
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert Path(home).parent == Path(dashboards_dir)
    assert (DASHBOARD.parent / Path(home).name).exists()
