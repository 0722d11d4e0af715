"""The kit's skl2onnx converters on the steps real pipelines hold, each through the parity
gate: compiled features and scores equal scikit-learn's, nulls and unknown values included."""

from __future__ import annotations

import logging
import math
import warnings

import numpy as np
import pytest

from devtools.sklearn_artifacts import COMPILED_RTOL
from devtools.sklearn_fits import coverage_records
from logic_service.config import load_config
from logic_service.errors import BadRequestError
from logic_service.pipeline.loader import load_pipelines
from logic_service.pipeline.parity import generated_rows
from logic_service.pipeline.runtime import Pipeline

COMPILED = ("template", "string_imputers", "one_hot", "ordinal", "functions", "recent")


def _pipelines(artifacts, name: str, pipelines: dict) -> dict[str, Pipeline]:
    return load_pipelines(load_config(artifacts.write_config(name, {"pipelines": pipelines})))


def _graph(name: str) -> dict:
    return {"transformer": f"coverage/{name}.pkl", "graph_model": "unused"}


TEMPLATE = {"transformer": "coverage/template.pkl", "model": "coverage/template_model.pkl"}


@pytest.fixture(scope="module")
def coverage(sklearn_artifacts, coverage_artifacts) -> dict[str, Pipeline]:
    pipelines = {name: _graph(name) for name in (*COMPILED, "python_function")}
    return _pipelines(sklearn_artifacts, "coverage.yaml", {**pipelines, "template_model": TEMPLATE})


def _offline(coverage_artifacts, name: str, records: list[dict]) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unknown categories, log of a negative number
        return coverage_artifacts.features(name, records)


def _column(coverage_artifacts, name: str, feature: str) -> int:
    names = list(coverage_artifacts.fitted[name].get_feature_names_out())
    return names.index(feature)


@pytest.mark.parametrize("name", [*COMPILED, "template_model"])
def test_each_pipeline_compiles_through_the_parity_gate(coverage, name) -> None:
    pipeline = coverage[name]
    assert pipeline.engine == "onnx", pipeline.engine_reason
    engine = pipeline.describe()["engine"]
    assert engine["name"] == "onnx" and engine["reason"] == "compiled: parity passed"
    assert engine["parity_max_diff"] <= 1e-5


def test_the_template_scores_like_scikit_learn_with_nulls_everywhere(
    coverage, coverage_artifacts
) -> None:
    """The public end-to-end template: imputers on numbers and strings, one-hot, then a
    StandardScaler(with_mean=False) on the sparse one-hot output, and a regressor."""
    pipeline = coverage["template_model"]
    records = coverage_records(200, seed=21)
    records[0].update(age=None, city=None, plan=None)
    assert {r["city"] for r in records} >= {None, "paris"}
    prepared = pipeline.prepare(records)
    expected = _offline(coverage_artifacts, "template", records)
    np.testing.assert_allclose(prepared.features, expected, rtol=COMPILED_RTOL, atol=1e-5)
    scores = pipeline.predict_local(prepared.features)
    offline = coverage_artifacts.template_model.predict(expected)
    np.testing.assert_allclose(scores, offline, rtol=COMPILED_RTOL, atol=1e-4)
    # The null city was imputed with the most frequent one: scored exactly as "paris".
    paris = pipeline.prepare([records[0] | {"city": "paris"}]).features
    np.testing.assert_array_equal(paris[0], prepared.features[0])
    # OneHotEncoder() refuses unknowns, so the service answers 400 as scikit-learn would.
    with pytest.raises(BadRequestError) as error:
        pipeline.prepare([{**records[1], "city": "atlantis"}])
    assert str(error.value) == (
        "column 'city', row 0: \"atlantis\" is not a known category (its encoder was fitted "
        'with handle_unknown=\'error\'); send one of: "brest", "lyon", "metz", "nice", "paris"'
    )


def test_parity_rows_send_a_null_to_every_string_column_that_takes_one(coverage) -> None:
    rows = generated_rows(coverage["template"].contract)
    for column in ("age", "income", "city", "plan"):
        assert any(row[column] is None for row in rows), column
    rows = generated_rows(coverage["one_hot"].contract)
    assert any(row["city"] is None for row in rows)  # NaN is one of city's categories


def test_string_imputers_fill_nulls_and_the_question_mark(coverage, coverage_artifacts) -> None:
    pipeline = coverage["string_imputers"]
    records = coverage_records(120, seed=22)
    records[0].update(city=None, plan=None)
    records[1].update(city="atlantis")  # unknown after a constant imputer: ignored
    features = pipeline.prepare(records).features
    expected = _offline(coverage_artifacts, "string_imputers", records)
    np.testing.assert_allclose(features, expected, rtol=COMPILED_RTOL, atol=1e-6)
    unknown_city = _column(coverage_artifacts, "string_imputers", "constant__city_unknown")
    assert features[0, unknown_city] == 1.0  # the null became the constant "unknown"
    # The training CSV marked a missing channel with "?": a JSON null there means the same.
    marked = records[2] | {"channel": "?"}
    null = records[2] | {"channel": None}
    both = pipeline.prepare([marked, null]).features
    np.testing.assert_array_equal(both[0], both[1])
    np.testing.assert_allclose(
        both[0], _offline(coverage_artifacts, "string_imputers", [marked])[0], atol=1e-6
    )
    # An integer-coded category: a null is the most frequent grade, not an unknown one.
    imputer = coverage_artifacts.fitted["string_imputers"].named_transformers_["integers"][0]
    grades = pipeline.prepare([records[3] | {"grade": None}, records[3] | {"grade": 1}])
    assert imputer.statistics_.tolist() == [1]
    np.testing.assert_array_equal(grades.features[0], grades.features[1])


def test_one_hot_drop_and_infrequent_variants(coverage, coverage_artifacts) -> None:
    pipeline = coverage["one_hot"]
    records = coverage_records(150, seed=23)
    records[0].update(city="atlantis", grade=42)  # unknown: ignored, or the infrequent column
    records[1].update(city=None)  # NaN was a category when fitted: its own column
    records[2].update(city="metz", grade=7)  # infrequent
    features = pipeline.prepare(records).features
    expected = _offline(coverage_artifacts, "one_hot", records)
    np.testing.assert_allclose(features, expected, rtol=COMPILED_RTOL, atol=1e-6)
    column = _column(coverage_artifacts, "one_hot", "rare__city_infrequent_sklearn")
    assert features[0, column] == 1.0 and features[2, column] == 1.0
    assert features[1, _column(coverage_artifacts, "one_hot", "first__city_nan")] == 1.0
    with pytest.raises(BadRequestError, match=r"column 'size', row 0: \"XL\" is not a known"):
        pipeline.prepare([{**records[3], "size": "XL"}])  # drop="if_binary" refuses unknowns


def test_ordinal_unknown_and_missing_values(coverage, coverage_artifacts) -> None:
    pipeline = coverage["ordinal"]
    records = [r | {"age": 30.0} for r in coverage_records(100, seed=24)]
    records[0].update(city="atlantis", plan="gold", grade=42, size="XL")
    records[1].update(city=None, plan=None)
    features = pipeline.prepare(records).features
    expected = _offline(coverage_artifacts, "ordinal", records)
    np.testing.assert_allclose(features, expected, rtol=COMPILED_RTOL, atol=1e-6)
    # Columns: city (-1 / -2), plan (NaN / -2), grade (99), then size and city (-1 / -3).
    unknown, missing = features[0].tolist(), features[1].tolist()
    assert unknown[0] == -1.0 and math.isnan(unknown[1]) and unknown[2:] == [99.0, -1.0, -1.0]
    assert missing[:2] == [-2.0, -2.0] and missing[4] == -3.0


def test_unknowns_under_warn_and_infrequent_ordinal_codes(coverage, coverage_artifacts) -> None:
    pipeline = coverage["recent"]
    records = coverage_records(100, seed=26)
    records[0].update(city="atlantis", plan="gold")
    records[1].update(city=None)
    records[2].update(city="metz")
    features = pipeline.prepare(records).features
    np.testing.assert_allclose(features, _offline(coverage_artifacts, "recent", records))
    column = _column(coverage_artifacts, "recent", "warn__city_infrequent_sklearn")
    assert features[0, column] == 1.0  # "warn" scores an unknown as infrequent_if_exist does
    # Ordinal codes: unknown -1, missing -5, and metz (infrequent) comes after the four
    # frequent cities (4), not at its alphabetical place (2).
    rare = _column(coverage_artifacts, "recent", "rare__city")
    assert features[:3, rare].tolist() == [-1.0, -5.0, 4.0]


def test_numpy_functions_compile_and_python_functions_fall_back_naming_them(
    sklearn_artifacts, coverage, coverage_artifacts, caplog
) -> None:
    pipeline = coverage["functions"]
    records = coverage_records(120, seed=25)
    records[0].update(age=None)
    features = pipeline.prepare(records).features
    expected = _offline(coverage_artifacts, "functions", records)
    np.testing.assert_allclose(features, expected, rtol=COMPILED_RTOL, atol=1e-5)
    # Outside a function's domain both engines give the same NaN or infinity.
    edge = [records[1] | {"balance": -5.0, "rate": 50.0}, records[2] | {"balance": 0.0}]
    np.testing.assert_allclose(
        pipeline.prepare(edge).features,
        _offline(coverage_artifacts, "functions", edge),
        rtol=COMPILED_RTOL,
        atol=1e-5,
    )
    with caplog.at_level(logging.WARNING):
        fallback = _pipelines(
            sklearn_artifacts, "coverage_python.yaml", {"p": _graph("python_function")}
        )["p"]
    reason = (
        "NotImplementedError: FunctionTransformer(func=devtools.sklearn_fits.halve) runs "
        "Python code; the compiled engine knows func=None and np.log1p, np.sqrt, np.log, "
        "np.exp, np.expm1, np.absolute"
    )
    assert fallback.engine == "sklearn" and fallback.engine_reason == f"fallback: {reason}"
    lines = [r.getMessage() for r in caplog.records if "pipeline p: serving" in r.getMessage()]
    assert lines == [f"pipeline p: serving through scikit-learn: {reason}"]
    np.testing.assert_allclose(
        fallback.prepare(records).features,
        _offline(coverage_artifacts, "python_function", records),
    )


def test_the_gate_catches_a_null_scored_differently(
    sklearn_artifacts, coverage_artifacts, monkeypatch
) -> None:
    """The gate's null rows reach the string columns: feed nulls as something the imputer's
    converter does not fill, and the pipeline must fall back instead of serving it."""
    monkeypatch.setattr("logic_service.pipeline.compiled.MISSING_STRING", "\x00not-missing")
    pipeline = _pipelines(
        sklearn_artifacts, "coverage_gate.yaml", {"p": _graph("string_imputers")}
    )["p"]
    assert pipeline.engine == "sklearn"
    assert pipeline.engine_reason.startswith("fallback: parity failed (atol 1e-05): max |diff|")
    assert "None" in pipeline.engine_reason
