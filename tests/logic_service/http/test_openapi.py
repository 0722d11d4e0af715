"""GET /openapi.json says exactly what POST /get_score accepts (in-process app).

Each test pins a mismatch schemathesis found (tests/faults/test_openapi_conformance.py): a
body the document allows must score, and the 400 it gets otherwise must name the real cause.
"""

from __future__ import annotations

import jsonschema
import pytest

from devtools.sklearn_artifacts import credit_records
from logic_service.app import create_app
from logic_service.settings import Settings

FLOAT32_MAX = 3.4028234663852886e38
FLOAT32_LIMIT = 3.4028235677973366e38  # float32's max plus half a step: rounds to inf


@pytest.fixture(scope="module")
def client(sklearn_artifacts):
    path = sklearn_artifacts.write_config(
        "openapi_test.yaml",
        {
            "default": "credit",
            "pipelines": {
                "credit": {
                    "transformer": "credit/transformer.pkl",
                    "model": "credit/sk_model.pkl",
                    "max_rows": 10,
                }
            },
        },
    )
    app = create_app(Settings(config_path=path, json_logs=False))
    return app.test_client()


@pytest.fixture(scope="module")
def document(client) -> dict:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    return response.get_json()


def allowed(document: dict, body: dict) -> bool:
    """Whether the document's request schema for pipeline `credit` accepts `body`."""
    schema = {**document, "$ref": "#/components/schemas/ScoreRequest_credit"}
    return jsonschema.Draft202012Validator(schema).is_valid(body)


def test_the_pipeline_is_compiled(client) -> None:
    # The float32 rules below are the compiled engine's; without it they would test nothing.
    pipelines = client.get("/pipelines").get_json()["data"]["pipelines"]
    assert pipelines[0]["engine"]["name"] == "onnx", pipelines


def test_a_number_beyond_float32_is_named_not_an_imputed_null(client) -> None:
    # age is imputed, so its null is fine; row 1's income is what the model cannot compute.
    first, second = credit_records(2, seed=5)
    data = [{**first, "age": None}, {**second, "income": 2.6e221}]
    response = client.post("/get_score", json={"data": data})
    assert response.status_code == 400
    message = response.get_json()["msg"]
    assert message.startswith("column 'income', row 1: "), message
    assert "beyond the float32 range" in message


def test_compiled_numeric_columns_document_the_float32_range(client, document) -> None:
    record = credit_records(1, seed=6)[0]
    age = document["components"]["schemas"]["Record_credit"]["properties"]["age"]
    assert age["exclusiveMaximum"] == FLOAT32_LIMIT and age["exclusiveMinimum"] == -FLOAT32_LIMIT
    for beyond in (FLOAT32_LIMIT, -FLOAT32_LIMIT, 1e39):
        body = {"data": [{**record, "age": beyond}]}
        assert not allowed(document, body), beyond
        response = client.post("/get_score", json=body)
        assert response.status_code == 400, beyond
        assert "beyond the float32 range" in response.get_json()["msg"]
    # Just above float32's max still rounds to it (schemathesis sent 3.402823466385289e38).
    for inside in (3.402823466385289e38, FLOAT32_MAX, -FLOAT32_MAX):
        body = {"data": [{**record, "age": None}, {**record, "income": inside}]}
        assert allowed(document, body), inside
        assert client.post("/get_score", json=body).status_code == 200, inside


def test_the_columns_form_types_each_column(client, document) -> None:
    records = credit_records(3, seed=7)
    columns = {name: [r[name] for r in records] for name in records[0]}
    assert allowed(document, {"data": columns})
    assert client.post("/get_score", json={"data": columns}).status_code == 200
    # Documented before as "any array": lists of lists or objects, empty lists, too many rows.
    for bad in ([[1]] * 3, [{}] * 3, [], [30] * 11):
        body = {"data": {**columns, "age": bad}}
        assert not allowed(document, body), bad
        assert client.post("/get_score", json=body).status_code in (400, 413), bad


def test_unknown_categories_may_be_any_scalar_when_they_are_scored(client, document) -> None:
    record = credit_records(1, seed=8)[0]
    for value in (True, 7, "atlantis", None):
        body = {"data": [{**record, "region": value}]}
        assert allowed(document, body), value
        response = client.post("/get_score", json=body)
        assert response.status_code == 200, (value, response.get_json())
    nested = {"data": [{**record, "region": ["north"]}]}
    assert not allowed(document, nested)
    assert client.post("/get_score", json=nested).status_code == 400


def test_a_null_model_picks_the_default_pipeline_as_documented(client, document) -> None:
    body = {"model": None, "data": credit_records(1, seed=9)}
    assert allowed(document, body)
    assert client.post("/get_score", json=body).status_code == 200
    assert not allowed(document, {**body, "model": "nope"})
    assert client.post("/get_score", json={**body, "model": "nope"}).status_code == 404
