"""The compiled engine through the real `logic-service` (gunicorn, preloaded app, 2 workers)."""

from __future__ import annotations

import re
import subprocess
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
import requests
from openapi_spec_validator import validate

from devtools.logic_tier import start_logic_service
from devtools.servers import free_port, script
from devtools.sklearn_artifacts import COMPILED_RTOL, ZOO_COLUMNS, zoo_records
from devtools.sklearn_fits import coverage_records
from logic_service.cli import main

ZOO = {"transformer": "zoo/transformer.pkl", "model": "zoo/model.pkl", "method": "predict_proba"}
# The commonest public end-to-end template (imputers on strings, scaled one-hot, regressor).
TEMPLATE = {"transformer": "coverage/template.pkl", "model": "coverage/template_model.pkl"}
CLIPPED = {
    "transformer": "notebook/clipper.pkl",
    "model": "notebook/clip_model.pkl",
    "columns": {"age": "number", "income": "number"},
}


def document() -> dict:
    return {
        "imports": ["notebook_classes"],
        "pipelines": {
            "zoo": ZOO,
            "zoo_allow": {**ZOO, "unknown_categories": "allow"},
            "zoo_reject": {**ZOO, "unknown_categories": "reject"},
            "clipped": CLIPPED,
            "template": TEMPLATE,
        },
    }


@pytest.fixture(scope="module")
def server(sklearn_artifacts, coverage_artifacts, tmp_path_factory):
    config = sklearn_artifacts.write_config("compiled_service.yaml", document())
    log = tmp_path_factory.mktemp("compiled_service") / "logic.log"
    server = start_logic_service(config, log)
    yield server
    server.stop()


def _post(server, pipeline: str, data) -> requests.Response:
    body = {"model": pipeline, "data": data}
    return requests.post(server.url + "/get_score", json=body, timeout=30)


def _metric(server, name: str, labels: str) -> float | None:
    text = requests.get(server.url + "/metrics", timeout=10).text
    match = re.search(rf"^{name}\{{{labels}\}} (\S+)$", text, re.M)
    return float(match.group(1)) if match else None


def test_compiled_scores_equal_sklearn_under_concurrency(server, sklearn_artifacts) -> None:
    records = zoo_records(200, seed=31)
    records[3]["region"] = "atlantis"
    offline = sklearn_artifacts.zoo_model.predict_proba(
        sklearn_artifacts.zoo.transform(pd.DataFrame(records))
    )

    def one(i: int) -> np.ndarray:
        response = _post(server, "zoo", records[i : i + 5])
        assert response.status_code == 200, response.text
        return np.asarray(response.json()["data"])

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(0, 200, 5)))
    np.testing.assert_allclose(np.vstack(results), offline, rtol=COMPILED_RTOL, atol=1e-6)


def test_engines_in_pipelines_metrics_and_one_fallback_line(server) -> None:
    info = requests.get(server.url + "/pipelines", timeout=10).json()["data"]["pipelines"]
    engines = {p["name"]: p["engine"] for p in info}
    assert engines["zoo"]["name"] == "onnx" and engines["zoo"]["parity_rows"] > 20
    assert engines["zoo"]["parity_max_diff"] < 1e-5
    assert engines["clipped"]["name"] == "sklearn"
    assert "Clipper" in engines["clipped"]["reason"]
    assert _metric(server, "logic_pipeline_engine", 'engine="onnx",pipeline="zoo"') == 1.0
    assert _metric(server, "logic_pipeline_engine", 'engine="sklearn",pipeline="zoo"') == 0.0
    assert _metric(server, "logic_pipeline_engine", 'engine="sklearn",pipeline="clipped"') == 1.0
    lines = [line for line in server.log().splitlines() if "pipeline clipped: serving" in line]
    assert len(lines) == 1, lines  # once, in the master, before the workers fork
    assert "serving through scikit-learn" in lines[0] and "Clipper" in lines[0]
    # The fallback still scores: the custom transformer runs as scikit-learn.
    assert _post(server, "clipped", [{"age": 40, "income": 50_000}]).status_code == 200


def test_the_public_template_serves_compiled_scores(server, coverage_artifacts) -> None:
    """Nulls in numbers and strings are imputed by the compiled graph as scikit-learn does."""
    info = requests.get(server.url + "/pipelines", timeout=10).json()["data"]["pipelines"]
    engine = {p["name"]: p["engine"] for p in info}["template"]
    assert engine["name"] == "onnx" and engine["reason"] == "compiled: parity passed"
    records = coverage_records(60, seed=35)
    records[0].update(age=None, income=None, city=None, plan=None)
    response = _post(server, "template", records)
    assert response.status_code == 200, response.text
    offline = coverage_artifacts.template_model.predict(
        coverage_artifacts.features("template", records)
    )
    np.testing.assert_allclose(response.json()["data"], offline, rtol=COMPILED_RTOL, atol=1e-4)
    response = _post(server, "template", [{**records[1], "city": "atlantis"}])
    assert response.status_code == 400
    assert response.json()["msg"].startswith(
        "column 'city', row 0: \"atlantis\" is not a known category"
    )


def test_unknown_category_modes_over_http(server) -> None:
    record = zoo_records(1, seed=32)[0]
    unknown = [record, {**record, "region": "atlantis"}]
    labels = 'column="region",pipeline="{}"'

    def counted(pipeline: str) -> float:
        return _metric(server, "logic_unknown_values_total", labels.format(pipeline)) or 0.0

    before = {pipeline: counted(pipeline) for pipeline in ("zoo", "zoo_allow", "zoo_reject")}
    for pipeline in ("zoo", "zoo_allow"):
        assert _post(server, pipeline, unknown).status_code == 200
    response = _post(server, "zoo_reject", unknown)
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == 400 and body["data"] is None
    assert body["msg"].startswith("column 'region', row 1: \"atlantis\" is not a known category")
    assert '"east", "islands", "north"' in body["msg"]
    for pipeline in ("zoo", "zoo_allow", "zoo_reject"):
        response = _post(server, pipeline, [{**record, "channel": "fax"}])
        assert response.status_code == 400
        assert "handle_unknown='error'" in response.json()["msg"]
    assert counted("zoo") == before["zoo"] + 1
    assert counted("zoo_allow") == before["zoo_allow"] + 1
    assert counted("zoo_reject") == before["zoo_reject"] == 0.0  # rejected, never scored
    warned = [line for line in server.log().splitlines() if "received unknown value" in line]
    # warn: logged once per worker process (2 here), never per request; allow: not logged.
    assert 1 <= len(warned) <= 2
    assert all("pipeline zoo: column 'region'" in line for line in warned)


def test_a_json_boolean_in_a_numeric_column_is_400(server) -> None:
    record = zoo_records(1, seed=33)[0]
    for pipeline in ("zoo", "clipped"):
        data = [record, {**record, "income": True}]
        response = _post(server, pipeline, data)
        assert response.status_code == 400, response.text
        assert response.json()["msg"].startswith(
            "column 'income', row 1: true is a boolean, not a number"
        )


def test_openapi_document_is_valid_and_matches_the_contract(server, sklearn_artifacts) -> None:
    response = requests.get(server.url + "/openapi.json", timeout=10)
    assert response.status_code == 200
    document = response.json()
    validate(document)
    assert document["openapi"] == "3.1.0"
    assert {"/get_score", "/health", "/ready", "/pipelines"} <= set(document["paths"])
    schemas = document["components"]["schemas"]
    record = schemas["Record_zoo"]
    assert record["required"] == ZOO_COLUMNS
    assert record["properties"]["age"]["type"] == ["number", "null"]  # imputed
    # income is imputed in one branch but read raw by another (poly): a null there is a 400,
    # so the document must not offer null.
    assert record["properties"]["income"]["type"] == "number"
    null_income = [{**zoo_records(1, seed=34)[0], "income": None}]
    assert _post(server, "zoo", null_income).status_code == 400
    null_age = [{**zoo_records(1, seed=34)[0], "age": None}]
    assert _post(server, "zoo", null_age).status_code == 200
    assert record["properties"]["score"]["type"] == "number"  # no imputer: null is a 400
    assert "enum" not in record["properties"]["region"]  # warn: unknowns are scored
    assert "type" not in record["properties"]["comment"]  # dropped: any value
    strict = schemas["Record_zoo_reject"]["properties"]
    encoder = sklearn_artifacts.zoo.named_transformers_["region"]
    assert strict["region"]["enum"] == encoder.categories_[0].tolist()
    assert strict["grade"]["enum"] == [1, 2, 3, 7]
    # handle_unknown="error": an enum in every mode.
    assert record["properties"]["channel"]["enum"] == ["app", "branch", "web"]
    error_ref = {"$ref": "#/components/schemas/Error"}
    responses = document["paths"]["/get_score"]["post"]["responses"]
    for status in ("400", "404", "413", "415", "502", "503", "504"):
        assert responses[status]["content"]["application/json"]["schema"] == error_ref
    # The example body scores.
    content = document["paths"]["/get_score"]["post"]["requestBody"]["content"]
    example = content["application/json"]["examples"]["zoo_reject"]["value"]
    scored = requests.post(server.url + "/get_score", json=example, timeout=10)
    assert scored.status_code == 200, scored.text


def test_engine_onnx_refuses_to_start_with_one_line(sklearn_artifacts) -> None:
    strict = {"imports": ["notebook_classes"], "pipelines": {"p": {**CLIPPED, "engine": "onnx"}}}
    config = sklearn_artifacts.write_config("compiled_refuse_cli.yaml", strict)
    result = subprocess.run(
        [script("logic-service"), "--config", str(config), "--bind", f"127.0.0.1:{free_port()}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("logic-service: error: ")
    assert "engine 'onnx' cannot serve" in last and "Clipper" in last
    assert "Traceback" not in result.stderr


def test_check_prints_engine_parity_and_rows(sklearn_artifacts, coverage_artifacts, capsys) -> None:
    config = sklearn_artifacts.write_config("compiled_check.yaml", document())
    assert main(["--config", str(config), "--check"]) == 0
    out = capsys.readouterr().out
    assert re.search(
        r"^zoo: 8 column\(s\) -> sklearn predict_proba\n  engine: onnx \(parity max \|diff\| "
        r"\S+ on \d+ rows, atol 1e-05\)$",
        out,
        re.M,
    ), out
    assert re.search(r"^  engine: sklearn \(fallback: MissingShapeCalculator: .*Clipper", out, re.M)


def test_workers_with_onnxruntime_exit_on_sigterm_without_being_killed(
    sklearn_artifacts, tmp_path
) -> None:
    """onnxruntime is imported by the preloaded app in the master; a forked worker that left
    through a normal interpreter exit hung (or aborted) in its C++ destructors until gunicorn's
    graceful timeout killed it. Workers now leave through os._exit with gunicorn's code."""
    config = sklearn_artifacts.write_config("compiled_exit.yaml", {"pipelines": {"zoo": ZOO}})
    log = tmp_path / "logic.log"
    server = start_logic_service(config, log)
    assert _post(server, "zoo", zoo_records(2)).status_code == 200
    code = server.stop(timeout=15)
    text = log.read_text()
    assert code == 0, text[-2000:]
    assert "terminate called" not in text
    assert not re.search(r"was sent SIG(ABRT|KILL)", text), text[-2000:]
    assert text.count("Worker exiting") == 2
