"""`assemble:`: separately fitted parts side by side compile and score like the glue code."""

from __future__ import annotations

import numpy as np
import pytest

from devtools.sklearn_artifacts import CHURN_COLUMNS, COMPILED_RTOL, churn_records
from logic_service.config import load_config
from logic_service.errors import BadRequestError, ConfigError
from logic_service.http.openapi import build_document
from logic_service.pipeline.loader import load_pipelines
from logic_service.pipeline.parity import generated_rows
from logic_service.pipeline.runtime import Pipeline

PARTS = [
    {"columns": ["balance", "tenure"], "artifact": "churn/scaler.pkl"},
    {"columns": ["geography"], "artifact": "churn/geo_encoder.pkl"},
    {"columns": "gender", "artifact": "churn/gender_label_encoder.pkl"},
]
ASSEMBLED = {"assemble": PARTS, "model": "churn/sk_model.pkl", "method": "predict_proba"}


def _load(artifacts, name: str, pipelines: dict) -> dict[str, Pipeline]:
    return load_pipelines(load_config(artifacts.write_config(name, {"pipelines": pipelines})))


@pytest.fixture(scope="module")
def assembled(sklearn_artifacts) -> dict[str, Pipeline]:
    return _load(
        sklearn_artifacts,
        "assembled.yaml",
        {"churn": ASSEMBLED, "churn_sklearn": {**ASSEMBLED, "engine": "sklearn"}},
    )


def test_the_parts_compile_and_score_like_the_glue(assembled, sklearn_artifacts) -> None:
    """The churn glue (scaler, one-hot, gender codes, np.hstack) without the Python hook."""
    pipeline = assembled["churn"]
    assert pipeline.engine == "onnx", pipeline.engine_reason
    assert pipeline.parity is not None and pipeline.parity.passed
    records = churn_records(80, seed=41)
    records[0]["geography"] = "Italy"  # unknown: the one-hot part ignores it
    glue = sklearn_artifacts.churn_features(records)
    for engine in ("churn", "churn_sklearn"):
        features = assembled[engine].prepare(records).features
        np.testing.assert_allclose(features, glue, rtol=COMPILED_RTOL, atol=1e-6)
        np.testing.assert_allclose(
            assembled[engine].predict_local(features),
            sklearn_artifacts.churn_model.predict_proba(glue),
            rtol=COMPILED_RTOL,
            atol=1e-6,
        )
    assert assembled["churn_sklearn"].engine == "sklearn"


def test_an_unknown_label_is_a_400_on_both_engines(assembled) -> None:
    record = churn_records(1, seed=42)[0]
    for engine in ("churn", "churn_sklearn"):
        with pytest.raises(BadRequestError) as error:
            assembled[engine].prepare([record, {**record, "gender": "Other"}])
        assert str(error.value) == (
            "column 'gender', row 1: \"Other\" is not a known category (its encoder was "
            'fitted with handle_unknown=\'error\'); send one of: "Female", "Male"'
        )


def test_contract_parity_rows_and_openapi_come_from_the_parts(assembled) -> None:
    pipeline = assembled["churn"]
    assert list(pipeline.schema.columns) == CHURN_COLUMNS
    assert pipeline.contract is not None and pipeline.contract.layout == "columns"
    gender = pipeline.contract.columns["gender"]
    assert gender.known_values == ["Female", "Male"] and gender.unknown_is_error
    rows = generated_rows(pipeline.contract)
    assert {row["geography"] for row in rows} >= {"France", "Germany", "Spain"}
    assert {row["gender"] for row in rows} == {"Female", "Male"}  # never an unknown label
    schema = build_document(assembled, "churn")["components"]["schemas"]["Record_churn"]
    assert schema["required"] == CHURN_COLUMNS
    assert schema["properties"]["gender"]["enum"] == ["Female", "Male"]
    assert schema["properties"]["balance"]["type"] == "number"
    described = pipeline.describe()["artifacts"]
    assert [item["type"].rsplit(".", 1)[-1] for item in described] == [
        "Assembled",
        "StandardScaler",
        "OneHotEncoder",
        "LabelEncoder",
        "LogisticRegression",
    ]


@pytest.mark.parametrize(
    ("parts", "message"),
    [
        (
            [{"columns": ["gender", "geography"], "artifact": "churn/gender_label_encoder.pkl"}],
            "assemble[0]: gender_label_encoder.pkl is a LabelEncoder: it encodes exactly one "
            "column, the pipeline file gives 2 (gender, geography)",
        ),
        (
            [PARTS[1], {"columns": ["tenure", "balance"], "artifact": "churn/scaler.pkl"}],
            "assemble[1]: scaler.pkl was fitted on columns balance, tenure; the pipeline file "
            "gives tenure, balance (list the same columns in that order)",
        ),
        (
            [{"columns": ["balance"], "artifact": "churn/sk_model.pkl"}],
            "assemble[0]: sk_model.pkl (LogisticRegression) has no transform(); is it a fitted "
            "transformer?",
        ),
    ],
)
def test_a_part_that_does_not_fit_its_columns_is_named(sklearn_artifacts, parts, message) -> None:
    with pytest.raises(ConfigError) as error:
        _load(sklearn_artifacts, "assembled_bad.yaml", {"p": {**ASSEMBLED, "assemble": parts}})
    assert str(error.value).endswith(f"pipeline 'p': {message}")
    assert "\n" not in str(error.value)
