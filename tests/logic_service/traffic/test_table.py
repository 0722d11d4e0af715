"""What the traffic table shows and checks: /pipelines, /ready, labels asked of the graph at
start (real tiers)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
import requests

from devtools.servers import ServerProcess, free_port, script
from devtools.traffic import TrafficBed, metric, start_traffic_logic


def test_pipelines_shows_weights_requests_per_version_and_the_shadow(
    traffic_bed: TrafficBed, graph: ServerProcess, tmp_path: Path
) -> None:
    logic = start_traffic_logic(
        traffic_bed,
        graph.url,
        tmp_path,
        {
            "routes": {"stable": 3, "canary": 1, 1: 0},
            "sticky_key": "customer_id",
            "shadow": "canary",
            "shadow_threshold": 0.5,
        },
    )
    try:
        record = traffic_bed.records(1)[0]
        session = requests.Session()
        versions = []
        for i in range(40):
            body = {"data": [dict(record, customer_id=f"c{i}")]}
            response = session.post(logic.url + "/get_score", json=body, timeout=30)
            versions.append(response.headers["X-Model-Version"])
        stable = versions.count("stable")
        deadline = time.monotonic() + 20
        while metric(logic.url, "logic_shadow_jobs_total", outcome="ok") < stable:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        info = requests.get(logic.url + "/pipelines", timeout=10).json()["data"]["pipelines"][0]
        ready = requests.get(logic.url + "/ready", timeout=10).json()
        api = requests.get(logic.url + "/openapi.json", timeout=10).json()
    finally:
        logic.stop()
    traffic = info["traffic"]
    assert traffic["generation"] == 1
    assert traffic["routes"] == [
        {
            "version": "stable",
            "weight": 3,
            "share": 0.75,
            "target": "credit@stable",
            "requests": stable,
        },
        {
            "version": "canary",
            "weight": 1,
            "share": 0.25,
            "target": "credit@canary",
            "requests": 40 - stable,
        },
        {"version": "1", "weight": 0, "share": 0.0, "target": "credit@1", "requests": 0},
    ]
    assert traffic["sticky_key"] == "customer_id" and traffic["sticky_fallbacks"] == 0
    shadow = traffic["shadow"]
    assert shadow["target"] == "credit@canary (shadow)" and shadow["sample"] == 1.0
    assert shadow["breaker"]["state"] == "closed"
    (comparison,) = shadow["comparisons"]  # canary requests are not compared with themselves
    assert comparison["primary"] == "stable" and comparison["jobs"]["ok"] == stable
    assert comparison["compared_values"] == stable
    answered = api["paths"]["/get_score"]["post"]["responses"]["200"]
    assert "X-Model-Version" in answered["headers"]
    assert set(ready["data"]["graph"]) == {
        "credit@stable",
        "credit@canary",
        "credit@1",
        "credit@canary (shadow)",
    }


def test_a_shadow_the_service_cannot_reach_is_listed_but_never_waited_for(
    traffic_bed: TrafficBed, graph: ServerProcess, tmp_path: Path
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    logic = start_traffic_logic(
        traffic_bed,
        graph.url,
        tmp_path,
        {"shadow": "canary", "shadow_graph_url": nowhere},
        version_label="stable",
    )
    try:
        records = traffic_bed.records(2)
        for _ in range(10):
            response = requests.post(logic.url + "/get_score", json={"data": records}, timeout=30)
            assert response.status_code == 200
            scores = [row[0] for row in response.json()["data"]]
            assert scores == pytest.approx(traffic_bed.expected(records, 1), abs=1e-5)
        deadline = time.monotonic() + 20
        while metric(logic.url, "logic_shadow_jobs_total", outcome="unavailable") < 10:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        ready = requests.get(logic.url + "/ready", timeout=10)
    finally:
        logic.stop()
    assert ready.status_code == 200
    assert ready.json()["data"]["pipelines"] == {"credit": "ready"}
    assert ready.json()["data"]["graph"]["credit@canary (shadow)"]["signature_read"] is False
    assert "warning" in logic.log().lower() and nowhere in logic.log()


def test_a_label_the_graph_does_not_know_stops_the_start_with_one_line(
    traffic_bed: TrafficBed, graph: ServerProcess, tmp_path: Path
) -> None:
    config = traffic_bed.write_pipelines(
        tmp_path / "pipelines.yaml", {"routes": {"stable": 95, "canray": 5}}
    )
    result = subprocess.run(
        [script("logic-service"), "--config", str(config), "--bind", f"127.0.0.1:{free_port()}"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env={**os.environ, "GRAPH_SERVICE_URL": graph.url, "LOGIC_JSON_LOGS": "0"},
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"logic-service: error: {config}: pipeline 'credit': traffic names label 'canray', "
        f"which graph model 'credit' at {graph.url} does not have: point it at a version "
        "first (models-config label credit canray=N) or fix the name"
    )
