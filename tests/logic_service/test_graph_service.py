"""End to end with the real graph tier: `graph-service` serving SavedModels, `logic-service`
under gunicorn in front of it, transformers fitted in the test session.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests

from devtools.logic_tier import start_logic_service
from devtools.savedmodels import dense_reference, start_graph_service, write_dense_savedmodel
from devtools.servers import start_server
from devtools.sklearn_artifacts import CREDIT_COLUMNS, churn_records, credit_records


def _wait_ready(url: str, status: int, timeout: float = 90) -> requests.Response:
    deadline = time.monotonic() + timeout
    while True:
        response = requests.get(url + "/ready", timeout=10)
        if response.status_code == status or time.monotonic() > deadline:
            return response
        time.sleep(0.3)


@pytest.fixture(scope="module")
def keras_credit(sklearn_artifacts, tmp_path_factory):
    """A Keras model on the credit features, saved as the .h5 an algorithm engineer hands over."""
    import keras

    width = sklearn_artifacts.credit_features(credit_records(1)).shape[1]
    keras.utils.set_random_seed(7)
    inputs = keras.Input(shape=(width,), name="features")
    hidden = keras.layers.Dense(8, activation="relu", name="hidden")(inputs)
    outputs = keras.layers.Dense(1, activation="sigmoid", name="default_probability")(hidden)
    model = keras.Model(inputs, outputs)
    h5 = tmp_path_factory.mktemp("keras_credit") / "model.h5"
    model.save(h5)
    return h5, model


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    """The graph tier's models/ folder (tests may add versions while it serves)."""
    return tmp_path_factory.mktemp("logic_graph_models")


@pytest.fixture(scope="module")
def stack(sklearn_artifacts, keras_credit, models_dir, tmp_path_factory):
    from converters.cli import convert_h5
    from converters.models_config import ModelEntry, ModelsConfig, default_base_path

    width = sklearn_artifacts.credit_features(credit_records(1)).shape[1]
    models = models_dir
    write_dense_savedmodel(models / "credit" / "1", width, seed=3)
    # Trained on another feature layout: the graph tier refuses our features (400 -> 502).
    write_dense_savedmodel(models / "narrow" / "1", 3, seed=4)
    write_dense_savedmodel(models / "evolving" / "1", width, seed=8, input_key="x")
    churn_width = sklearn_artifacts.churn_features(churn_records(1)).shape[1]
    write_dense_savedmodel(models / "churn" / "1", churn_width, seed=5, n_outputs=2)
    config = ModelsConfig(models / "models.config")
    for name in ("credit", "narrow", "churn", "evolving"):
        config.upsert(ModelEntry(name, default_base_path(name)))
    config.save()
    h5, _ = keras_credit
    converted = convert_h5.main([str(h5), "--name", "credit_keras", "--models-dir", str(models)])
    assert converted == 0
    logs = tmp_path_factory.mktemp("logic_graph_logs")
    graph = start_graph_service(models / "models.config", logs)
    pipelines = sklearn_artifacts.write_config(
        "graph_e2e.yaml",
        {
            "default": "credit",
            "pipelines": {
                "credit": {"transformer": "credit/transformer.pkl", "graph_model": "credit"},
                "narrow": {"transformer": "credit/transformer.pkl", "graph_model": "narrow"},
                "evolving": {"transformer": "credit/transformer.pkl", "graph_model": "evolving"},
                "credit_keras": {
                    "transformer": "credit/transformer.pkl",
                    "graph_model": "credit_keras",
                },
                "churn": {
                    "artifacts": {
                        "scaler": "churn/scaler.pkl",
                        "geo": "churn/geo_encoder.pkl",
                        "gender": "churn/gender_encoder.pkl",
                    },
                    "preprocess": "churn_glue:preprocess",
                    "postprocess": "churn_rules:postprocess",
                    "graph_model": "churn",
                    "columns": {"balance": "number", "tenure": "number"},
                },
            },
        },
    )
    logic = None
    try:
        logic = start_logic_service(
            pipelines, logs / "logic.log", env={"GRAPH_SERVICE_URL": graph.url}
        )
        ready = _wait_ready(logic.url, 200)
        assert ready.status_code == 200, ready.text
        yield logic, graph, width
    finally:
        if logic is not None:
            logic.stop()
        graph.stop()


def test_scores_equal_offline_transformer_plus_model(stack, sklearn_artifacts) -> None:
    logic, _, _ = stack
    for rows in (1, 100):
        records = credit_records(rows, seed=rows)
        expected = dense_reference(sklearn_artifacts.credit_features(records), seed=3)
        columns = {name: [r[name] for r in records] for name in CREDIT_COLUMNS}
        for data in (records, columns):
            response = requests.post(logic.url + "/get_score", json={"data": data}, timeout=30)
            body = response.json()
            assert response.status_code == 200, body
            assert body["msg"] == "Successful!" and body["code"] == 200
            np.testing.assert_allclose(body["data"], expected, rtol=1e-5, atol=1e-6)


def test_scores_from_a_keras_model_converted_by_convert_h5(
    stack, sklearn_artifacts, keras_credit
) -> None:
    """The whole hand-over: .h5 -> convert-h5 -> graph tier; transformer.pkl -> logic tier."""
    logic, _, _ = stack
    _, model = keras_credit
    records = credit_records(25, seed=11)
    response = requests.post(
        logic.url + "/get_score", json={"model": "credit_keras", "data": records}, timeout=30
    )
    assert response.status_code == 200, response.text
    expected = model.predict(sklearn_artifacts.credit_features(records), verbose=0)
    np.testing.assert_allclose(np.asarray(response.json()["data"]), expected, atol=1e-5)


def test_a_new_version_with_a_renamed_input_is_picked_up_without_a_restart(
    stack, sklearn_artifacts, models_dir, tmp_path
) -> None:
    """The signature is cached per worker; when the graph tier rejects a request because a new
    version renamed its input, the logic tier re-reads the signature and retries: no 502."""
    logic, _, _ = stack
    records = credit_records(5, seed=21)
    features = sklearn_artifacts.credit_features(records)

    def score() -> requests.Response:
        body = {"model": "evolving", "data": records}
        return requests.post(logic.url + "/get_score", json=body, timeout=30)

    first = score()
    assert first.status_code == 200, first.text
    np.testing.assert_allclose(first.json()["data"], dense_reference(features, seed=8), atol=1e-6)

    staged = tmp_path / "2"
    write_dense_savedmodel(staged, features.shape[1], seed=9, input_key="features")
    staged.rename(models_dir / "evolving" / "2")
    expected = dense_reference(features, seed=9)
    deadline = time.monotonic() + 60
    statuses = []
    while time.monotonic() < deadline:
        response = score()
        statuses.append(response.status_code)
        if response.status_code == 200 and np.allclose(response.json()["data"], expected):
            break
        time.sleep(0.3)
    else:
        pytest.fail(f"version 2 never answered through the logic tier: {statuses[-5:]}")
    assert set(statuses) == {200}, statuses


def test_thousand_concurrent_requests_through_both_tiers(stack, sklearn_artifacts) -> None:
    logic, _, _ = stack
    pool = credit_records(40, seed=11)
    expected = dense_reference(sklearn_artifacts.credit_features(pool), seed=3)

    def worker(offset: int) -> list[str]:
        problems = []
        with requests.Session() as session:
            for i in range(offset, 1000, 8):
                response = session.post(
                    logic.url + "/get_score", json={"data": [pool[i % 40]]}, timeout=60
                )
                if response.status_code != 200:
                    problems.append(f"{i}: {response.status_code} {response.text[:200]}")
                elif not np.allclose(response.json()["data"], expected[[i % 40]], rtol=1e-5):
                    problems.append(f"{i}: wrong score")
        return problems

    with ThreadPoolExecutor(8) as executor:
        problems = [p for chunk in executor.map(worker, range(8)) for p in chunk]
    assert problems == []


def test_preprocess_hook_over_separate_encoders_then_graph_then_rules(
    stack, sklearn_artifacts
) -> None:
    logic, _, _ = stack
    records = churn_records(5, seed=9)
    features = sklearn_artifacts.churn_features(records)
    expected = dense_reference(features, seed=5, n_outputs=2)[:, 1]
    response = requests.post(
        logic.url + "/get_score", json={"model": "churn", "data": records}, timeout=30
    )
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert [row["customer"] for row in data] == [r["geography"] for r in records]
    np.testing.assert_allclose([row["churn"] for row in data], expected, rtol=1e-5)
    assert [row["call_customer"] for row in data] == [bool(p > 0.5) for p in expected]


def test_pipelines_shows_the_signature_read_from_the_graph(stack) -> None:
    logic, _, width = stack
    info = requests.get(logic.url + "/pipelines", timeout=10).json()["data"]
    credit = next(p for p in info["pipelines"] if p["name"] == "credit")
    assert credit["model"]["signature_read"] is True
    assert credit["model"]["inputs"] == {"x": {"dtype": "float32", "shape": [-1, width]}}


def test_shape_mismatch_is_502_naming_both_shapes(stack, sklearn_artifacts) -> None:
    """The graph would refuse these features (400); the logic tier sees it from the signature
    before the request joins a batch, and answers 502 naming both shapes."""
    logic, graph, width = stack
    records = credit_records(2)
    features = sklearn_artifacts.credit_features(records).astype(np.float32).tolist()
    direct = requests.post(
        graph.url + "/v1/models/narrow:predict", json={"inputs": {"x": features}}, timeout=30
    )
    assert direct.status_code == 400
    response = requests.post(
        logic.url + "/get_score", json={"model": "narrow", "data": records}, timeout=30
    )
    body = response.json()
    assert response.status_code == 502 and body["code"] == 502 and body["data"] is None
    assert f"have shape [2, {width}]" in body["msg"] and "expects [-1, 3]" in body["msg"]


def test_graph_killed_and_restarted_json_503_then_200_ready_throughout(stack, tmp_path) -> None:
    """The graph tier dies: JSON 503s, the logic pod stays ready (its own work is intact) and
    reports the graph in /ready's body; the graph comes back and scoring follows."""
    logic, graph, _ = stack
    graph.stop()
    scored = requests.post(logic.url + "/get_score", json={"data": credit_records(1)}, timeout=30)
    assert scored.status_code == 503 and scored.json()["code"] == 503
    ready = requests.get(logic.url + "/ready", timeout=10)
    assert ready.status_code == 200
    assert "credit" in ready.json()["data"]["graph"]
    assert requests.get(logic.url + "/health", timeout=10).status_code == 200
    # Same command, same port: the graph tier comes back and the logic tier follows.
    restarted = start_server(
        graph.argv,
        graph.port,
        tmp_path / "graph-restarted.log",
        ready_path="/v1/models/credit",
        ready_status=(200,),
        timeout=180,
    )
    graph.process, graph.log_path = restarted.process, restarted.log_path
    deadline = time.monotonic() + 30  # an open breaker lets a probe through within 5 s
    while True:
        again = requests.post(
            logic.url + "/get_score", json={"data": credit_records(1)}, timeout=30
        )
        if again.status_code == 200 or time.monotonic() > deadline:
            break
        assert again.status_code == 503, again.text
        time.sleep(0.2)
    assert again.status_code == 200, again.text
