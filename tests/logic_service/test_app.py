"""The app in-process (Flask test client): contract, routing, hooks and the error table.

The same behaviours are proven through real gunicorn in test_cli.py; here the many error
cases run fast.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import sklearn

from devtools.sklearn_artifacts import (
    CHURN_COLUMNS,
    COMPILED_RTOL,
    CREDIT_COLUMNS,
    churn_records,
    credit_records,
)
from logic_service.app import create_app
from logic_service.errors import ConfigError
from logic_service.pipeline.artifacts import file_sha256
from logic_service.settings import Settings

# A rules table with a gap: one income has no row (a bug a caller's request can reach).
FAULTY_RULES = """
def postprocess(outputs, frame):
    if (frame["income"] == 424242).any():
        raise RuntimeError("rules table missing")
    return outputs
"""


def service_document() -> dict:
    """Several in-process pipelines, no default: the body's "model" picks one."""
    churn_artifacts = {
        "scaler": "churn/scaler.pkl",
        "geo": "churn/geo_encoder.pkl",
        "gender": "churn/gender_encoder.pkl",
    }
    return {
        "imports": ["notebook_classes"],
        "pipelines": {
            "credit_lr": {
                "transformer": "credit/transformer.pkl",
                "model": "credit/sk_model.pkl",
                "method": "predict_proba",
            },
            "credit_skops": {
                "transformer": "credit/transformer.skops",
                "model": "credit/sk_model.pkl",
                "method": "decision_function",
                "max_rows": 5,
            },
            "churn": {
                "artifacts": churn_artifacts,
                "preprocess": "churn_glue:preprocess",
                "model": "churn/sk_model.pkl",
                "method": "predict_proba",
                "postprocess": "churn_rules:postprocess",
                "columns": {name: "number" for name in ["balance", "tenure"]}
                | {"geography": "string", "gender": "string"},
            },
            "clipped": {
                "transformer": "notebook/clipper.pkl",
                "model": "notebook/clip_model.pkl",
                "columns": {"age": "number", "income": "number"},
            },
            "scaled": {
                "transformer": "credit/scaler.pkl",
                "model": "notebook/clip_model.pkl",
                "postprocess": "faulty_rules:postprocess",
            },
        },
    }


@pytest.fixture(scope="module")
def client(sklearn_artifacts):
    (sklearn_artifacts.root / "faulty_rules.py").write_text(FAULTY_RULES)
    path = sklearn_artifacts.write_config("app_test.yaml", service_document())
    app = create_app(Settings(config_path=path, max_content_length=64_000, json_logs=False))
    return app.test_client()


def _ok(response) -> list:
    body = response.get_json()
    assert response.status_code == 200, body
    assert body["msg"] == "Successful!" and body["code"] == 200
    return body["data"]


def _error(response, status: int) -> str:
    body = response.get_json()
    assert response.status_code == status, body
    assert response.mimetype == "application/json"
    assert body["code"] == status and body["data"] is None
    return body["msg"]


def test_scores_equal_the_offline_computation_for_every_data_shape(
    client, sklearn_artifacts
) -> None:
    records = credit_records(6)
    offline = sklearn_artifacts.sk_model.predict_proba(sklearn_artifacts.credit_features(records))
    columns = {name: [r[name] for r in records] for name in CREDIT_COLUMNS}
    for data in (records, columns):
        scores = _ok(client.post("/get_score", json={"model": "credit_lr", "data": data}))
        np.testing.assert_allclose(scores, offline, rtol=COMPILED_RTOL)
    single = _ok(client.post("/get_score", json={"model": "credit_lr", "data": records[0]}))
    np.testing.assert_allclose(single, offline[:1], rtol=COMPILED_RTOL)


def test_routing_by_model_field(client, sklearn_artifacts) -> None:
    records = credit_records(3)
    features = sklearn_artifacts.credit_features(records)
    skops = _ok(client.post("/get_score", json={"model": "credit_skops", "data": records}))
    np.testing.assert_allclose(
        skops, sklearn_artifacts.sk_model.decision_function(features), rtol=COMPILED_RTOL
    )
    message = _error(client.post("/get_score", json={"data": records}), 400)
    assert "several pipelines" in message and "credit_lr" in message
    message = _error(client.post("/get_score", json={"model": "credit", "data": records}), 404)
    assert "unknown pipeline 'credit'" in message


def test_preprocess_hook_over_separate_encoders_and_postprocess_rules(
    client, sklearn_artifacts
) -> None:
    records = churn_records(4)
    probabilities = sklearn_artifacts.churn_model.predict_proba(
        sklearn_artifacts.churn_features(records)
    )[:, 1]
    data = _ok(client.post("/get_score", json={"model": "churn", "data": records}))
    assert [row["customer"] for row in data] == [r["geography"] for r in records]
    np.testing.assert_allclose([row["churn"] for row in data], probabilities, rtol=1e-12)
    assert [row["call_customer"] for row in data] == [bool(p > 0.5) for p in probabilities]
    missing = [{k: v for k, v in r.items() if k != "gender"} for r in records]
    message = _error(client.post("/get_score", json={"model": "churn", "data": missing}), 400)
    assert "'gender'" in message


def test_notebook_class_works_once_its_module_is_declared(client, sklearn_artifacts) -> None:
    records = [{"age": 30.0, "income": 41_000.0}, {"age": 99.0, "income": 1e9}]
    data = _ok(client.post("/get_score", json={"model": "clipped", "data": records}))
    assert len(data) == 2
    # The 1e9 income is clipped to the training range, so its score stays in range.
    assert data[1] < sklearn_artifacts.credit_frame["income"].max() / 100


def test_pipelines_describes_the_contract_and_versions(client, sklearn_artifacts) -> None:
    info = {p["name"]: p for p in _ok(client.get("/pipelines"))["pipelines"]}
    assert [c["name"] for c in info["credit_lr"]["columns"]] == CREDIT_COLUMNS
    assert [c["name"] for c in info["churn"]["columns"]] == CHURN_COLUMNS
    transformer = info["credit_lr"]["artifacts"][0]
    assert transformer["sha256"] == file_sha256(
        sklearn_artifacts.root / "credit" / "transformer.pkl"
    )
    assert info["credit_lr"]["model"] == {
        "kind": "sklearn",
        "path": str(sklearn_artifacts.root / "credit" / "sk_model.pkl"),
        "method": "predict_proba",
    }
    scaled = info["scaled"]
    assert scaled["artifacts"][0]["sklearn_version"] == sklearn.__version__
    assert scaled["artifacts"][0]["format"] == "joblib"
    assert scaled["self_test"]["scored"] > 0
    assert info["credit_lr"]["warnings"] == []


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"model": "credit_lr", "data": []}, 400, '"data" is empty'),
        (
            {"model": "credit_lr", "data": [{"age": 1, "income": 2, "region": "north"}]},
            400,
            "missing column(s) 'channel'",
        ),
        (
            {
                "model": "credit_lr",
                "data": {
                    "age": [1, "abc"],
                    "income": [1, 2],
                    "region": ["n", "s"],
                    "channel": ["app", "web"],
                },
            },
            400,
            "column 'age', row 1: 'abc' is not a number",
        ),
        (
            {
                "model": "credit_lr",
                "data": [
                    {"age": 1, "income": 2, "region": "north", "channel": "app"},
                    {"age": 1, "income": 2, "region": "north"},
                ],
            },
            400,
            "record 1 has no 'channel'",
        ),
        (
            {"model": "scaled", "data": [{"age": 3, "income": 2}, {"age": None, "income": 2}]},
            400,
            "column 'age', row 1 is null and pipeline 'scaled' does not impute missing values",
        ),
        ({"model": "credit_skops", "data": credit_records(6)}, 400, "max_rows=5"),
        ({"model": "credit_lr"}, 400, '"data" field'),
        ({"model": 7, "data": []}, 400, '"model" must be a pipeline name'),
        ({"model": "scaled", "data": [{"age": 1, "income": 424242}]}, 500, "rules table missing"),
    ],
)
def test_error_table(client, body: dict, status: int, needle: str) -> None:
    assert needle in _error(client.post("/get_score", json=body), status)


def test_http_level_errors_share_the_envelope(client) -> None:
    assert "not JSON" in _error(
        client.post("/get_score", data="data=1", content_type="text/plain"), 415
    )
    assert "not valid JSON" in _error(
        client.post("/get_score", data="{", content_type="application/json"), 400
    )
    big = {"model": "credit_lr", "data": credit_records(1) * 2000}
    assert "too large" in _error(client.post("/get_score", json=big), 413)
    response = client.get("/get_score")
    _error(response, 405)
    assert "POST" in response.headers["Allow"]
    _error(client.get("/score"), 404)


def test_request_id_is_echoed_or_made(client) -> None:
    echoed = client.get("/health", headers={"X-Request-ID": "caller-123"})
    assert echoed.headers["X-Request-ID"] == "caller-123"
    made = client.get("/health").headers["X-Request-ID"]
    assert len(made) == 32 and made != client.get("/health").headers["X-Request-ID"]
    assert client.get("/health").get_json()["code"] == 200


def test_ready_without_graph_pipelines_and_metrics(client) -> None:
    assert client.get("/ready").status_code == 200
    client.post("/get_score", json={"model": "credit_lr", "data": credit_records(2)})
    text = client.get("/metrics").get_data(as_text=True)
    assert 'logic_requests_total{pipeline="credit_lr",status="200"}' in text
    assert 'logic_request_seconds_count{pipeline="credit_lr",stage="preprocess"}' in text
    assert 'logic_request_seconds_count{pipeline="credit_lr",stage="model"}' in text


def test_start_is_refused_for_bad_artifacts(sklearn_artifacts) -> None:
    pinned = {
        "pipelines": {
            "p": {
                "transformer": {"path": "credit/transformer.pkl", "sha256": "0" * 64},
                "model": "credit/sk_model.pkl",
            }
        }
    }
    path = sklearn_artifacts.write_config("pinned_bad.yaml", pinned)
    with pytest.raises(ConfigError, match="the config pins 0000"):
        create_app(Settings(config_path=path, json_logs=False))
    notebook = {
        "pipelines": {
            "p": {
                "transformer": "notebook/clipper.pkl",
                "model": "notebook/clip_model.pkl",
            }
        }
    }
    path = sklearn_artifacts.write_config("notebook_no_imports.yaml", notebook)
    with pytest.raises(ConfigError, match=r"'Clipper'.*imports:"):
        create_app(Settings(config_path=path, json_logs=False))
    graph = {"pipelines": {"p": {"transformer": "credit/transformer.pkl", "graph_model": "m"}}}
    path = sklearn_artifacts.write_config("graph_no_url.yaml", graph)
    with pytest.raises(ConfigError, match="GRAPH_SERVICE_URL"):
        create_app(Settings(config_path=path, json_logs=False))


def test_logic_tier_never_imports_tensorflow(sklearn_artifacts) -> None:
    """Every logic_service module imported and a request served: no TF, converters, graph tier."""
    document = {
        "pipelines": {
            "p": {
                "transformer": "credit/transformer.pkl",
                "model": "credit/sk_model.pkl",
            }
        }
    }
    path = sklearn_artifacts.write_config("no_tf.yaml", document)
    program = textwrap.dedent(
        f"""
        import importlib, pkgutil, sys
        import logic_service
        for info in pkgutil.iter_modules(logic_service.__path__):
            if info.name != "gunicorn.conf":
                importlib.import_module("logic_service." + info.name)
        from logic_service.app import create_app
        from logic_service.settings import Settings
        app = create_app(Settings(config_path={str(path)!r}, json_logs=False))
        response = app.test_client().post("/get_score", json={{"data": {credit_records(2)!r}}})
        assert response.status_code == 200, response.get_json()
        loaded = sorted(m for m in sys.modules
                        if m.split(".")[0] in {{"tensorflow", "converters", "graph_service",
                                                "keras", "tf_keras"}})
        print("LOADED", loaded)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "LOADED []" in result.stdout


def test_frame_handles_missing_age_like_the_transformer(sklearn_artifacts, client) -> None:
    """A null in a numeric column reaches the imputer, as it would offline."""
    records = [r for r in credit_records(10) if r["age"] is None][:1]
    assert records, "fixture should include a record with a missing age"
    offline = sklearn_artifacts.sk_model.predict_proba(
        sklearn_artifacts.transformer.transform(pd.DataFrame(records))
    )
    data = _ok(client.post("/get_score", json={"model": "credit_lr", "data": records}))
    np.testing.assert_allclose(data, offline, rtol=COMPILED_RTOL)
