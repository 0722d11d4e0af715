"""The compiled engine in-process: every transformer kind, the parity gate, fallback, contract."""

from __future__ import annotations

import json
import logging
import multiprocessing
import warnings

import joblib
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devtools.sklearn_artifacts import COMPILED_RTOL, ZOO_REGIONS, zoo_records
from devtools.sklearn_fits import halve
from logic_service.config import load_config
from logic_service.errors import BadRequestError, ConfigError
from logic_service.pipeline.loader import load_pipelines
from logic_service.pipeline.parity import UNKNOWN_CATEGORY, generated_rows
from logic_service.pipeline.runtime import Pipeline

ZOO = {"transformer": "zoo/transformer.pkl", "model": "zoo/model.pkl", "method": "predict_proba"}


def _load(artifacts, name: str, pipelines: dict) -> dict[str, Pipeline]:
    path = artifacts.write_config(name, {"imports": ["notebook_classes"], "pipelines": pipelines})
    return load_pipelines(load_config(path))


@pytest.fixture(scope="module")
def zoo(sklearn_artifacts) -> Pipeline:
    return _load(sklearn_artifacts, "compiled_zoo.yaml", {"zoo": ZOO})["zoo"]


def _offline(artifacts, records: list[dict]) -> np.ndarray:
    return artifacts.zoo.transform(pd.DataFrame(records))


def test_every_transformer_kind_compiles_and_matches_sklearn(zoo, sklearn_artifacts) -> None:
    """Imputer+scaler, infrequent one-hot, ordinal and one-hot on integers, polynomial,
    robust scaling, a dropped and a passed-through column: one ONNX graph, same features."""
    assert zoo.engine == "onnx", zoo.engine_reason
    assert zoo.parity is not None and zoo.parity.passed and zoo.parity.rows >= 20
    records = zoo_records(300, seed=11)
    records[0]["region"] = "atlantis"  # unknown: lands in the infrequent column
    records[1]["grade"] = 99  # unknown integer: -1 from the ordinal encoder, zeros one-hot
    records[2]["age"] = None  # imputed
    prepared = zoo.prepare(records)
    assert prepared.frame is None and prepared.rows == 300
    expected = _offline(sklearn_artifacts, records)
    np.testing.assert_allclose(prepared.features, expected, rtol=COMPILED_RTOL, atol=1e-5)
    scores = zoo.predict_local(prepared.features)
    offline = sklearn_artifacts.zoo_model.predict_proba(expected)
    np.testing.assert_allclose(scores, offline, rtol=COMPILED_RTOL, atol=1e-6)


def test_parity_rows_walk_the_fitted_state(zoo, sklearn_artifacts) -> None:
    assert zoo.contract is not None
    rows = generated_rows(zoo.contract)
    regions = {row["region"] for row in rows}
    assert set(ZOO_REGIONS) | {UNKNOWN_CATEGORY} <= regions
    assert {1, 2, 3, 7} <= {row["grade"] for row in rows}
    # handle_unknown="error": an unknown channel is never a parity row (sklearn refuses it).
    assert {row["channel"] for row in rows} == {"app", "branch", "web"}
    assert any(row["age"] is None for row in rows)  # the imputer sees a null
    scale = sklearn_artifacts.zoo.named_transformers_["num"].named_steps["scale"]
    incomes = [row["income"] for row in rows if row["income"] is not None]
    assert max(incomes) > scale.mean_[1] + 10 * scale.scale_[1]
    ranged = sklearn_artifacts.zoo.named_transformers_["poly"].named_steps["range"]
    assert ranged.data_max_[1] in {row["score"] for row in rows}


def test_chains_and_single_transformers_compile(sklearn_artifacts, tmp_path) -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LinearRegression
    from sklearn.preprocessing import OrdinalEncoder, PolynomialFeatures, StandardScaler

    frame = pd.DataFrame(zoo_records(200, seed=4)).dropna()
    first = ColumnTransformer([("s", StandardScaler(), ["income", "score"])]).fit(frame)
    second = PolynomialFeatures(2).fit(first.transform(frame))
    ordinal = OrdinalEncoder().fit(frame[["region", "channel"]])
    scaler = StandardScaler().fit(frame[["income", "tenure"]])
    model = LinearRegression().fit(frame[["income", "tenure"]], frame["score"])
    for name, obj in [("first", first), ("second", second), ("ordinal", ordinal)]:
        joblib.dump(obj, sklearn_artifacts.root / "zoo" / f"{name}.pkl")
    joblib.dump(scaler, sklearn_artifacts.root / "zoo" / "scaler.pkl")
    joblib.dump(model, sklearn_artifacts.root / "zoo" / "linear.pkl")
    pipelines = _load(
        sklearn_artifacts,
        "compiled_chain.yaml",
        {
            "chain": {
                "transformer": ["zoo/first.pkl", "zoo/second.pkl"],
                "graph_model": "unused",
            },
            "ordinal": {"transformer": "zoo/ordinal.pkl", "graph_model": "unused"},
            "scaled": {"transformer": "zoo/scaler.pkl", "graph_model": "unused"},
            "model_only": {"model": "zoo/linear.pkl"},
        },
    )
    records = frame.head(20).to_dict("records")
    expected = {
        "chain": second.transform(first.transform(frame.head(20))),
        "ordinal": ordinal.transform(frame.head(20)[["region", "channel"]]),
        "scaled": scaler.transform(frame.head(20)[["income", "tenure"]]),
    }
    for name, features in expected.items():
        pipeline = pipelines[name]
        assert pipeline.engine == "onnx", (name, pipeline.engine_reason)
        got = pipeline.prepare(records).features
        np.testing.assert_allclose(got, features, rtol=COMPILED_RTOL, atol=1e-5)
    only = pipelines["model_only"]
    assert only.engine == "onnx", only.engine_reason
    scores = only.predict_local(only.prepare(records).features)
    offline = model.predict(frame.head(20)[["income", "tenure"]])
    np.testing.assert_allclose(scores, offline, rtol=COMPILED_RTOL)


def test_unconvertible_steps_fall_back_with_one_log_line(sklearn_artifacts, caplog) -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import FunctionTransformer

    frame = pd.DataFrame(zoo_records(50, seed=5))
    halved = ColumnTransformer([("half", FunctionTransformer(halve), ["income", "score"])])
    joblib.dump(halved.fit(frame), sklearn_artifacts.root / "zoo" / "function.pkl")
    with caplog.at_level(logging.INFO, logger="logic_service.pipeline.runtime"):
        pipelines = _load(
            sklearn_artifacts,
            "compiled_fallback.yaml",
            {
                "function": {"transformer": "zoo/function.pkl", "graph_model": "unused"},
                "custom": {
                    "transformer": "notebook/clipper.pkl",
                    "columns": {"age": "number", "income": "number"},
                    "graph_model": "unused",
                },
            },
        )
    for name, culprit in [
        ("function", "FunctionTransformer(func=devtools.sklearn_fits.halve)"),
        ("custom", "Clipper"),
    ]:
        pipeline = pipelines[name]
        assert pipeline.engine == "sklearn"
        assert culprit in pipeline.engine_reason
        lines = [
            r.getMessage() for r in caplog.records if f"pipeline {name}: serving" in r.getMessage()
        ]
        assert len(lines) == 1 and "serving through scikit-learn" in lines[0]
        assert culprit in lines[0]
    features = pipelines["function"].prepare(frame.head(3).to_dict("records")).features
    np.testing.assert_allclose(features, frame.head(3)[["income", "score"]] / 2)


def test_engine_onnx_refuses_what_cannot_compile(sklearn_artifacts) -> None:
    with pytest.raises(ConfigError) as error:
        _load(
            sklearn_artifacts,
            "compiled_refuse.yaml",
            {
                "custom": {
                    "transformer": "notebook/clipper.pkl",
                    "columns": {"age": "number", "income": "number"},
                    "engine": "onnx",
                    "graph_model": "unused",
                }
            },
        )
    message = str(error.value)
    assert "engine 'onnx' cannot serve" in message and "Clipper" in message
    assert "engine: auto" in message


def test_parity_failure_falls_back_and_engine_sklearn_is_honoured(sklearn_artifacts) -> None:
    pipelines = _load(
        sklearn_artifacts,
        "compiled_parity.yaml",
        {
            "strict": {**ZOO, "parity_atol": 1e-12},
            "forced": {**ZOO, "engine": "sklearn"},
        },
    )
    strict = pipelines["strict"]
    assert strict.engine == "sklearn"
    assert strict.engine_reason.startswith("fallback: parity failed (atol 1e-12): max |diff|")
    assert pipelines["forced"].engine == "sklearn"
    assert (
        pipelines["forced"].describe()["engine"]["reason"] == "engine: sklearn in the pipeline file"
    )
    with pytest.raises(ConfigError, match="parity failed"):
        _load(
            sklearn_artifacts,
            "compiled_parity2.yaml",
            {"p": {**ZOO, "parity_atol": 1e-12, "engine": "onnx"}},
        )


def test_samples_file_joins_the_parity_rows(sklearn_artifacts, zoo) -> None:
    samples = sklearn_artifacts.root / "zoo" / "samples.json"
    samples.write_text(json.dumps(zoo_records(7, seed=21)))
    pipeline = _load(
        sklearn_artifacts, "compiled_samples.yaml", {"p": {**ZOO, "samples": "zoo/samples.json"}}
    )["p"]
    assert pipeline.parity is not None and zoo.parity is not None
    assert pipeline.parity.rows == zoo.parity.rows + 7
    samples.write_text('{"not": "records"')
    with pytest.raises(ConfigError, match=r"samples file .* is not JSON"):
        _load(
            sklearn_artifacts,
            "compiled_samples2.yaml",
            {"p": {**ZOO, "samples": "zoo/samples.json"}},
        )


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("engine", "tvm", "engine 'tvm' is not one of auto, onnx, sklearn"),
        (
            "unknown_categories",
            "drop",
            "unknown_categories 'drop' is not one of allow, warn, reject",
        ),
        ("parity_atol", 2, "parity_atol must be a number between 0 and 1"),
        ("samples", 3, "samples: expected a path"),
    ],
)
def test_bad_engine_keys_are_config_errors(sklearn_artifacts, key, value, message) -> None:
    with pytest.raises(ConfigError, match=message):
        _load(sklearn_artifacts, "compiled_bad.yaml", {"p": {**ZOO, key: value}})


def test_unknown_category_modes(sklearn_artifacts, caplog) -> None:
    pipelines = _load(
        sklearn_artifacts,
        "compiled_modes.yaml",
        {mode: {**ZOO, "unknown_categories": mode} for mode in ("allow", "warn", "reject")},
    )
    counted: dict[str, list] = {}
    for mode, pipeline in pipelines.items():
        pipeline.on_unknown = lambda column, n, mode=mode: counted.setdefault(mode, []).append(
            (column, n)
        )
    records = zoo_records(3, seed=8)
    records[1]["region"] = "atlantis"
    records[2]["region"] = "mars"
    expected = _offline(sklearn_artifacts, records)
    with caplog.at_level(logging.WARNING, logger="logic_service.pipeline.runtime"):
        for mode in ("allow", "warn"):
            for _ in range(2):
                features = pipelines[mode].prepare(records).features
                np.testing.assert_allclose(features, expected, rtol=COMPILED_RTOL, atol=1e-5)
    assert counted == {"allow": [("region", 2)] * 2, "warn": [("region", 2)] * 2}
    warnings = [r.getMessage() for r in caplog.records if "unknown value" in r.getMessage()]
    assert len(warnings) == 1 and "pipeline warn: column 'region'" in warnings[0]
    with pytest.raises(BadRequestError) as error:
        pipelines["reject"].prepare(records)
    assert str(error.value) == (
        "column 'region', row 1: \"atlantis\" is not a known category (this pipeline sets "
        'unknown_categories: reject); send one of: "abroad", "east", "islands", "north", '
        '"south", "west"'
    )
    # An encoder fitted with handle_unknown="error": 400 in every mode, never a 500.
    for pipeline in pipelines.values():
        bad = [{**records[0], "channel": "fax"}]
        with pytest.raises(
            BadRequestError,
            match=r"column 'channel', row 0: \"fax\" is not a known category .*handle_unknown='error'",
        ):
            pipeline.prepare(bad)


def test_unknown_categories_apply_on_the_sklearn_engine_too(sklearn_artifacts) -> None:
    pipeline = _load(
        sklearn_artifacts,
        "compiled_modes_sk.yaml",
        {"p": {**ZOO, "engine": "sklearn", "unknown_categories": "reject"}},
    )["p"]
    with pytest.raises(BadRequestError, match="column 'grade', row 0: 99 is not a known category"):
        pipeline.prepare([{**zoo_records(1)[0], "grade": 99}])


def test_hooks_still_get_a_dataframe(sklearn_artifacts) -> None:
    (sklearn_artifacts.root / "zoo_rules.py").write_text(
        "def postprocess(outputs, frame):\n"
        "    return [{'region': r, 'p': float(o[1])} for r, o in zip(frame['region'], outputs)]\n"
    )
    pipeline = _load(
        sklearn_artifacts,
        "compiled_hook.yaml",
        {"p": {**ZOO, "postprocess": "zoo_rules:postprocess"}},
    )["p"]
    assert pipeline.engine == "onnx"
    records = zoo_records(4, seed=12)
    prepared = pipeline.prepare(records)
    assert isinstance(prepared.frame, pd.DataFrame)
    assert list(prepared.frame["region"]) == [r["region"] for r in records]
    data = pipeline.postprocess(pipeline.predict_local(prepared.features), prepared)
    assert [row["region"] for row in data] == [r["region"] for r in records]


def test_null_without_imputer_and_booleans_are_400(zoo) -> None:
    record = zoo_records(1, seed=3)[0]
    with pytest.raises(
        BadRequestError, match="column 'income', row 0 is null and pipeline 'zoo' does not impute"
    ):
        zoo.prepare([{**record, "income": None}])
    with pytest.raises(
        BadRequestError, match="column 'score', row 1: true is a boolean, not a number"
    ):
        zoo.prepare([record, {**record, "score": True}])


def _score_in_child(pipeline: Pipeline, records: list, queue) -> None:
    queue.put(pipeline.prepare(records).features)


def test_sessions_are_made_after_fork(sklearn_artifacts) -> None:
    """The master (preload) keeps no onnxruntime session; a forked child opens its own."""
    fresh = _load(sklearn_artifacts, "compiled_fork.yaml", {"zoo": ZOO})["zoo"]
    assert fresh.compiled_features is not None
    assert fresh.compiled_features.program._session is None
    records = zoo_records(5, seed=13)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_score_in_child, args=(fresh, records, queue))
    child.start()
    from_child = queue.get(timeout=60)
    child.join(60)
    assert child.exitcode == 0
    assert fresh.compiled_features.program._session is None  # the parent still has none
    np.testing.assert_allclose(from_child, fresh.prepare(records).features)
    fresh.open_sessions()
    session = fresh.compiled_features.program._session
    assert session is not None and fresh.compiled_model is not None
    fresh.prepare(records)
    assert fresh.compiled_features.program._session is session  # one per process, reused


def test_bin_edges_in_float32_fail_parity_and_fall_back(sklearn_artifacts) -> None:
    """A value just below a bin edge rounds onto it in float32: the gate must see that."""
    binned = _load(
        sklearn_artifacts,
        "compiled_binned.yaml",
        {"binned": {"transformer": "zoo/binned.pkl", "graph_model": "unused"}},
    )["binned"]
    assert binned.engine == "sklearn"
    assert binned.engine_reason.startswith("fallback: parity failed (atol 1e-05): max |diff| 1")
    edges = (
        joblib.load(sklearn_artifacts.root / "zoo" / "binned.pkl")
        .named_transformers_["bins"]
        .bin_edges_[0]
    )
    below = float(np.nextafter(edges[1], -np.inf))
    features = binned.prepare([{**zoo_records(1)[0], "score": below}]).features
    assert features.tolist() == [[0.0]]  # scikit-learn's bin, served by scikit-learn


_ZOO_RECORD = st.fixed_dictionaries(
    {
        "age": st.none() | st.floats(0, 120, allow_nan=False),
        "income": st.floats(-1e6, 1e7, allow_nan=False),
        "region": st.sampled_from([*ZOO_REGIONS, "atlantis", ""]) | st.text(max_size=5),
        "grade": st.sampled_from([1, 2, 3, 7]) | st.integers(-5, 100),
        "score": st.floats(-1e3, 1e3, allow_nan=False),
        "channel": st.sampled_from(["app", "web", "branch"]),
        "tenure": st.integers(0, 50),
        "comment": st.text(max_size=5),
    }
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(records=st.lists(_ZOO_RECORD, min_size=1, max_size=6))
def test_any_valid_record_gets_sklearn_features(zoo, sklearn_artifacts, records) -> None:
    """Property: whatever a caller sends that validates, compiled features equal sklearn's."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = _offline(sklearn_artifacts, records)
    got = zoo.prepare(records).features
    np.testing.assert_allclose(got, expected, rtol=COMPILED_RTOL, atol=1e-4)


def test_numbers_beyond_float32_are_400_not_inf(zoo) -> None:
    record = zoo_records(1, seed=3)[0]
    with pytest.raises(
        BadRequestError, match=r"column 'income', row 0: 1e\+40 is beyond the float32"
    ):
        zoo.prepare([{**record, "income": 1e40}])
