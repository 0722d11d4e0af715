"""`logic-service` for real: gunicorn, preloaded app, 2 workers x 4 threads, over HTTP."""

from __future__ import annotations

import json
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import orjson
import pytest
import requests
import sklearn

from devtools.logic_tier import start_logic_service
from devtools.servers import free_port, script
from devtools.sklearn_artifacts import (
    COMPILED_RTOL,
    CREDIT_COLUMNS,
    credit_records,
)
from logic_service.cli import main
from tests.logic_service.test_app import FAULTY_RULES, service_document


@pytest.fixture(scope="module")
def server(sklearn_artifacts, tmp_path_factory):
    (sklearn_artifacts.root / "faulty_rules.py").write_text(FAULTY_RULES)
    config = sklearn_artifacts.write_config("cli_test.yaml", service_document())
    log = tmp_path_factory.mktemp("logic_cli") / "logic.log"
    server = start_logic_service(config, log, env={"LOGIC_MAX_CONTENT_LENGTH": "64000"})
    yield server
    server.stop()


def _count(url: str, pipeline: str, status: str) -> float:
    text = requests.get(url + "/metrics", timeout=10).text
    match = re.search(
        rf'^logic_requests_total\{{pipeline="{pipeline}",status="{status}"\}} (\S+)$', text, re.M
    )
    return float(match.group(1)) if match else 0.0


def test_scores_through_gunicorn_equal_offline(server, sklearn_artifacts) -> None:
    records = credit_records(5)
    offline = sklearn_artifacts.sk_model.predict_proba(sklearn_artifacts.credit_features(records))
    columns = {name: [r[name] for r in records] for name in CREDIT_COLUMNS}
    for data in (records, columns):
        response = requests.post(
            server.url + "/get_score", json={"model": "credit_lr", "data": data}, timeout=10
        )
        body = response.json()
        assert response.status_code == 200, body
        assert body["msg"] == "Successful!" and body["code"] == 200
        np.testing.assert_allclose(body["data"], offline, rtol=COMPILED_RTOL)


def test_thousand_concurrent_requests_without_error(server, sklearn_artifacts) -> None:
    before = _count(server.url, "credit_lr", "200")
    pool = credit_records(50, seed=7)
    expected = sklearn_artifacts.sk_model.predict_proba(sklearn_artifacts.credit_features(pool))

    def worker(offset: int) -> list[str]:
        problems = []
        with requests.Session() as session:
            for i in range(offset, 1000, 8):
                rows = [pool[i % 50], pool[(i + 1) % 50]]
                response = session.post(
                    server.url + "/get_score",
                    json={"model": "credit_lr", "data": rows},
                    headers={"X-Request-ID": f"load-{i}"},
                    timeout=30,
                )
                if response.status_code != 200:
                    problems.append(f"{i}: {response.status_code} {response.text[:200]}")
                elif response.headers["X-Request-ID"] != f"load-{i}":
                    problems.append(f"{i}: request id {response.headers['X-Request-ID']}")
                elif not np.allclose(
                    response.json()["data"], expected[[i % 50, (i + 1) % 50]], rtol=COMPILED_RTOL
                ):
                    problems.append(f"{i}: wrong scores")
        return problems

    with ThreadPoolExecutor(8) as executor:
        problems = [p for chunk in executor.map(worker, range(8)) for p in chunk]
    assert problems == []
    # /metrics is answered by one worker but aggregates both (multiprocess mode).
    assert _count(server.url, "credit_lr", "200") - before == 1000


def test_errors_over_http_are_json_with_the_status(server) -> None:
    cases = [
        (requests.post(server.url + "/get_score", json={"model": "nope", "data": []}), 404),
        (
            requests.post(
                server.url + "/get_score",
                data=b"age,income\n1,2\n",
                headers={"Content-Type": "text/csv"},
            ),
            415,
        ),
        (requests.post(server.url + "/get_score", json={"model": "credit_lr", "data": []}), 400),
        (requests.get(server.url + "/get_score"), 405),
        (requests.get(server.url + "/nothing/here"), 404),
        (
            requests.post(
                server.url + "/get_score",
                json={"model": "credit_lr", "data": credit_records(1) * 2000},
            ),
            413,
        ),
        (  # chunked (no Content-Length): still 413, not a truncated body parsed as JSON
            requests.post(
                server.url + "/get_score",
                data=iter([orjson.dumps({"model": "credit_lr", "data": credit_records(1) * 2000})]),
                headers={"Content-Type": "application/json"},
            ),
            413,
        ),
        (
            requests.post(
                server.url + "/get_score",
                json={"model": "scaled", "data": [{"age": 1, "income": 424242}]},
            ),
            500,
        ),
    ]
    for response, status in cases:
        assert response.status_code == status, response.text
        assert response.headers["Content-Type"] == "application/json"
        body = response.json()
        assert body["code"] == status and body["data"] is None and body["msg"]


def test_get_score_methods_and_chunked_bodies_through_gunicorn(server) -> None:
    """POST /get_score is served before Flask (score_endpoint.py): the other methods, and a
    chunked body under the limit, must still behave as any route does."""
    options = requests.options(server.url + "/get_score", timeout=10)
    assert options.status_code == 200
    assert {m.strip() for m in options.headers["Allow"].split(",")} == {"OPTIONS", "POST"}
    put = requests.put(server.url + "/get_score", json={}, timeout=10)
    assert put.status_code == 405 and put.json()["code"] == 405
    assert "POST" in put.headers["Allow"]
    records = credit_records(3)
    whole = requests.post(
        server.url + "/get_score", json={"model": "credit_lr", "data": records}, timeout=10
    )
    chunked = requests.post(
        server.url + "/get_score",
        data=iter([b'{"model": "credit_lr", ', orjson.dumps({"data": records})[1:]]),
        headers={"Content-Type": "application/json", "X-Request-ID": "chunky"},
        timeout=10,
    )
    assert whole.status_code == chunked.status_code == 200, chunked.text
    assert chunked.json()["data"] == whole.json()["data"]
    assert chunked.headers["X-Request-ID"] == "chunky"


def test_pipelines_and_one_json_log_line_per_request(server) -> None:
    info = requests.get(server.url + "/pipelines", timeout=10).json()["data"]
    scaled = next(p for p in info["pipelines"] if p["name"] == "scaled")
    assert scaled["artifacts"][0]["sklearn_version"] == sklearn.__version__
    requests.post(
        server.url + "/get_score",
        json={"model": "churn", "data": []},
        headers={"X-Request-ID": "trace-me-42"},
        timeout=10,
    )
    lines = [
        json.loads(line)
        for line in server.log().splitlines()
        if line.startswith("{") and "trace-me-42" in line
    ]
    assert len(lines) == 1
    # ... and no second line from gunicorn's access log (off unless LOGIC_ACCESS_LOG=-).
    assert sum("trace-me-42" in line for line in server.log().splitlines()) == 1
    assert lines[0]["pipeline"] == "churn" and lines[0]["status"] == 400
    assert "total_ms" in lines[0] and '"data" is empty' in lines[0]["error"]
    # The start-up self-test's rows were not counted as traffic: no unknown-category warning.
    assert "received unknown value" not in server.log()


def test_sigterm_stops_gracefully(server) -> None:
    assert server.stop() == 0
    assert "Shutting down: Master" in server.log()


def test_bad_artifact_refuses_start_with_one_line(sklearn_artifacts) -> None:
    document = {
        "pipelines": {
            "p": {
                "transformer": {"path": "credit/transformer.pkl", "sha256": "f" * 64},
                "model": "credit/sk_model.pkl",
            }
        }
    }
    config = sklearn_artifacts.write_config("cli_pinned_bad.yaml", document)
    result = subprocess.run(
        [script("logic-service"), "--config", str(config), "--bind", f"127.0.0.1:{free_port()}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("logic-service: error: artifact ")
    assert "the config pins ffff" in last
    assert "Traceback" not in result.stderr


def test_help_and_usage_errors(capsys) -> None:
    result = subprocess.run([script("logic-service"), "--help"], capture_output=True, text=True)
    assert (
        result.returncode == 0 and "--config" in result.stdout and "LOGIC_CONFIG" in result.stdout
    )
    for name in (
        "LOGIC_OVERDUE_FACTOR",
        "LOGIC_OVERDUE_FLOOR_MS",
        "LOGIC_OVERDUE_MIN_CALLS",
        "LOGIC_TRAFFIC_POLL_SECONDS",
        "LOGIC_COMPILED_DIR",
    ):
        assert name in result.stdout
    with pytest.raises(SystemExit) as error:
        main(["--workers", "0", "--config", "x.yaml"])
    assert error.value.code == 2
    assert "must be at least 1" in capsys.readouterr().err


def test_check_prints_pipelines_and_warnings(sklearn_artifacts, capsys) -> None:
    config = sklearn_artifacts.write_config("cli_check.yaml", service_document())
    assert main(["--config", str(config), "--check"]) == 0
    out = capsys.readouterr().out
    assert "credit_lr: 4 column(s) -> sklearn predict_proba" in out
    assert "self-test:" in out and "rows scored" in out
