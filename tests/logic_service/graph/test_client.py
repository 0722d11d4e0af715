"""Graph-tier failures, proven with real processes: gunicorn logic tier + a real HTTP graph tier.

The graph tier here is a tiny HTTP server in the test process, because the real one cannot
be made slow or wrong on demand: slow -> 504 (at the pipeline's limit or the caller's deadline),
400 -> 502 with the graph's text, down -> 503 while /ready stays 200 and reports it, request
ids forwarded, connections kept alive and pooled.
"""

from __future__ import annotations

import numpy as np
import pytest
import requests

from devtools.logic_tier import TinyGraphTier, start_logic_service
from devtools.sklearn_artifacts import credit_records


@pytest.fixture(scope="module")
def stack(sklearn_artifacts, tmp_path_factory):
    width = sklearn_artifacts.credit_features(credit_records(1)).shape[1]
    tier = TinyGraphTier(width, delay=3.0).start()
    pipelines = {
        name: {"transformer": "credit/transformer.pkl", "graph_model": name}
        for name in ("echo", "slow", "reject", "cut")
    }
    pipelines["slow"]["timeout"] = 0.5
    pipelines["slow_no_limit"] = {"transformer": "credit/transformer.pkl", "graph_model": "slow"}
    config = sklearn_artifacts.write_config(
        "graph_faults.yaml", {"graph_service_url": "http://127.0.0.1:9", "pipelines": pipelines}
    )
    log = tmp_path_factory.mktemp("logic_graph_faults") / "logic.log"
    # GRAPH_SERVICE_URL overrides the (wrong) address written in the file.
    server = start_logic_service(
        config,
        log,
        env={
            "GRAPH_SERVICE_URL": tier.url,
            "LOGIC_GRAPH_RETRIES": "1",
            "LOGIC_BREAKER_FAILURES": "0",  # breaker behaviour: test_graph_target.py
        },
    )
    yield server, tier
    server.stop()
    tier.stop()


def _post(server, model: str, rows: int = 3, request_id: str | None = None):
    headers = {"X-Request-ID": request_id} if request_id else {}
    return requests.post(
        server.url + "/get_score",
        json={"model": model, "data": credit_records(rows)},
        headers=headers,
        timeout=30,
    )


def test_graph_call_sends_float32_features_and_forwards_the_request_id(
    stack, sklearn_artifacts
) -> None:
    server, tier = stack
    response = _post(server, "echo", rows=4, request_id="abc-123")
    assert response.status_code == 200, response.text
    features = sklearn_artifacts.credit_features(credit_records(4)).astype(np.float32)
    np.testing.assert_allclose(response.json()["data"], features.sum(axis=1, keepdims=True), 1e-5)
    assert "abc-123" in tier.request_ids


def test_connections_to_the_graph_tier_are_kept_alive(stack) -> None:
    server, tier = stack
    before = tier.connections
    for _ in range(30):
        assert _post(server, "echo", rows=1).status_code == 200
    # 2 workers x at most 4 threads could open 8 connections; never one per request.
    assert tier.connections - before <= 8


def test_slow_graph_is_504(stack) -> None:
    server, _ = stack
    response = _post(server, "slow")
    body = response.json()
    assert response.status_code == 504 and body["code"] == 504 and body["data"] is None
    assert "did not answer" in body["msg"] and "0.5s" in body["msg"]


def test_graph_400_is_502_with_the_graph_error_text(stack) -> None:
    server, _ = stack
    response = _post(server, "reject")
    body = response.json()
    assert response.status_code == 502 and body["code"] == 502
    assert "input size does not match signature: 2!=8 [x]" in body["msg"]


def test_a_response_cut_off_mid_body_is_a_json_502(stack) -> None:
    server, _ = stack
    response = _post(server, "cut")
    body = response.json()
    assert response.status_code == 502 and body["code"] == 502 and body["data"] is None
    assert "broke off" in body["msg"] and "IncompleteRead" in body["msg"]
    assert _post(server, "echo").status_code == 200


def test_deadline_header_lowers_the_graph_timeout(stack) -> None:
    """No pipeline timeout: the graph call gets what is left of the caller's budget."""
    server, _ = stack
    response = requests.post(
        server.url + "/get_score",
        json={"model": "slow_no_limit", "data": credit_records(1)},
        headers={"X-Request-Timeout-Ms": "300"},
        timeout=30,
    )
    body = response.json()
    assert response.status_code == 504 and body["code"] == 504, body
    assert "did not answer" in body["msg"]
    bad = requests.post(
        server.url + "/get_score",
        json={"model": "echo", "data": credit_records(1)},
        headers={"X-Request-Timeout-Ms": "soon"},
        timeout=30,
    )
    assert bad.status_code == 400 and "X-Request-Timeout-Ms" in bad.json()["msg"]


def test_graph_errors_do_not_cost_a_signature_read(stack) -> None:
    """A graph 400 (not about the signature) is answered without re-reading the metadata."""
    server, tier = stack
    assert _post(server, "reject").status_code == 502
    before = tier.metadata_calls
    for _ in range(6):
        assert _post(server, "reject").status_code == 502
    assert tier.metadata_calls == before


def test_graph_down_is_json_503_and_ready_stays_200_reporting_the_graph(stack) -> None:
    """Readiness is this pod's own work: a graph outage shows in /ready's body, the pod stays
    in the Service and answers JSON 503s instead of refused connections."""
    server, tier = stack
    assert requests.get(server.url + "/ready", timeout=10).status_code == 200
    tier.stop()
    try:
        response = _post(server, "echo")
        assert response.status_code == 503, response.text
        assert response.json()["code"] == 503 and "unreachable" in response.json()["msg"]
        ready = requests.get(server.url + "/ready", timeout=10)
        assert ready.status_code == 200
        graph = ready.json()["data"]["graph"]
        assert set(graph) == {"echo", "slow", "reject", "cut"}
        assert graph["echo"]["signature_read"] is True
        assert requests.get(server.url + "/health", timeout=10).status_code == 200
    finally:
        tier.start()
    assert _post(server, "echo").status_code == 200
