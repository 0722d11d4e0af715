"""The pipeline file: typos and contradictions stop the start with the key named."""

from __future__ import annotations

from pathlib import Path

import pytest

from logic_service.config import load_config, parse_config, parse_text
from logic_service.errors import ConfigError


def _parse(document: dict, tmp_path: Path):
    return parse_config(document, tmp_path / "pipelines.yaml")


def test_issue_example_parses_with_paths_relative_to_the_file(tmp_path: Path) -> None:
    config = _parse(
        {
            "graph_service_url": "http://127.0.0.1:8501",
            "default": "credit",
            "pipelines": {
                "credit": {"transformer": "credit/transformer.pkl", "graph_model": "credit"},
                "credit_lr": {
                    "transformer": "credit/transformer.pkl",
                    "model": "credit/sk_model.pkl",
                    "method": "predict_proba",
                },
                "churn": {
                    "artifacts": {"scaler": "churn/scaler.pkl"},
                    "preprocess": "churn_glue:preprocess",
                    "graph_model": "churn",
                    "version_label": "stable",
                },
            },
        },
        tmp_path,
    )
    assert config.default == "credit"
    credit = config.pipelines["credit"]
    assert credit.transformers[0].path == (tmp_path / "credit/transformer.pkl").resolve()
    assert credit.graph is not None and credit.graph.path() == "/v1/models/credit"
    assert config.pipelines["churn"].graph.path() == "/v1/models/churn/labels/stable"
    assert config.pipelines["credit_lr"].method == "predict_proba"


@pytest.mark.parametrize(
    ("pipeline", "needle"),
    [
        ({"transformer": "t.pkl", "grpah_model": "x"}, "grpah_model"),
        ({"transformer": "t.pkl"}, "exactly one of 'graph_model'"),
        ({"transformer": "t.pkl", "graph_model": "a", "model": "m.pkl"}, "exactly one"),
        ({"model": "m.pkl", "method": "score"}, "method 'score'"),
        ({"graph_model": "a", "version": 1, "version_label": "x"}, "not both"),
        ({"graph_model": "a", "sha256": {"t.pkl": "abc"}, "transformer": "t.pkl"}, "64 hex"),
        ({"model": "m.pkl", "preprocess": "no-colon"}, "module:function"),
        ({"model": "m.pkl", "max_rows": 0}, "max_rows"),
    ],
)
def test_bad_pipeline_names_the_problem(tmp_path: Path, pipeline: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match="pipeline 'p'") as error:
        _parse({"pipelines": {"p": pipeline}}, tmp_path)
    assert needle in str(error.value)


def test_default_must_be_a_pipeline(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="default 'nope' is not a pipeline"):
        _parse({"default": "nope", "pipelines": {"p": {"model": "m.pkl"}}}, tmp_path)


def test_missing_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "absent.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("pipelines: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)


def test_batching_keys_per_graph_pipeline(tmp_path: Path) -> None:
    base = {"transformer": "t.pkl", "graph_model": "m"}
    config = _parse(
        {
            "pipelines": {
                "a": {**base, "batching": False},
                "b": {**base, "max_batch_rows": 32, "max_batch_wait_ms": 1.5},
                "c": base,
            }
        },
        tmp_path,
    )
    a, b, c = (config.pipelines[name] for name in "abc")
    assert a.batching is False and b.max_batch_rows == 32 and b.max_batch_wait_ms == 1.5
    assert (c.batching, c.max_batch_rows, c.max_batch_wait_ms) == (None, None, None)


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ({"batching": "yes"}, "batching: expected true or false"),
        ({"max_batch_rows": 0}, "max_batch_rows: expected a positive integer"),
        ({"max_batch_wait_ms": -2}, "max_batch_wait_ms: expected a number of milliseconds"),
    ],
)
def test_bad_batching_keys_are_named(tmp_path: Path, extra: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        _parse(
            {"pipelines": {"p": {"transformer": "t.pkl", "graph_model": "m", **extra}}}, tmp_path
        )


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ("timeout: .nan", "timeout: expected a positive number of seconds, got nan"),
        ("timeout: .inf", "timeout: expected a positive number of seconds, got inf"),
        ("max_batch_wait_ms: .inf", "max_batch_wait_ms: expected a number of milliseconds"),
        ("max_batch_wait_ms: -.inf", "max_batch_wait_ms: expected a number of milliseconds"),
    ],
)
def test_yaml_nan_and_infinity_are_not_a_number_of_seconds(
    tmp_path: Path, line: str, needle: str
) -> None:
    text = f"pipelines:\n  p:\n    transformer: t.pkl\n    graph_model: m\n    {line}\n"
    with pytest.raises(ConfigError, match=needle):
        parse_text(text, tmp_path / "pipelines.yaml")


def test_batching_keys_need_a_graph_model(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'batching' applies to 'graph_model'"):
        _parse({"pipelines": {"p": {"model": "m.pkl", "batching": True}}}, tmp_path)


def test_assemble_lists_parts_with_their_columns(tmp_path: Path) -> None:
    config = _parse(
        {
            "pipelines": {
                "p": {
                    "assemble": [
                        {"columns": ["balance", "tenure"], "artifact": "churn/scaler.pkl"},
                        {"columns": "gender", "artifact": {"path": "churn/gender.pkl"}},
                    ],
                    "sha256": {"churn/scaler.pkl": "a" * 64},
                    "graph_model": "churn",
                }
            }
        },
        tmp_path,
    )
    first, second = config.pipelines["p"].assemble
    assert first.columns == ("balance", "tenure") and first.artifact.sha256 == "a" * 64
    assert first.artifact.path == (tmp_path / "churn/scaler.pkl").resolve()
    assert second.columns == ("gender",) and second.artifact.sha256 is None


@pytest.mark.parametrize(
    ("assemble", "extra", "needle"),
    [
        ([], {}, "assemble: expected a list of {columns: [names], artifact: path}"),
        ({"columns": ["a"]}, {}, "assemble: expected a list of"),
        (["a.pkl"], {}, "assemble[0]: expected {columns: [names], artifact: path}"),
        ([{"columns": ["a"]}], {}, "assemble[0]: missing 'artifact'"),
        ([{"artifact": "a.pkl"}], {}, "assemble[0]: missing 'columns'"),
        ([{"columns": [], "artifact": "a.pkl"}], {}, "assemble[0]: columns: expected a column"),
        ([{"columns": [1], "artifact": "a.pkl"}], {}, "assemble[0]: columns: expected a column"),
        ([{"columns": ["a", "a"], "artifact": "a.pkl"}], {}, "names a column twice"),
        (
            [{"columns": "a", "artifact": "a.pkl", "kind": 1}],
            {},
            "assemble[0]: unknown key(s) kind",
        ),
        ([{"columns": "a", "artifact": 3}], {}, "assemble[0].artifact: expected a file path"),
        (
            [{"columns": "a", "artifact": "a.pkl"}],
            {"transformer": "t.pkl"},
            "either 'assemble' or 'transformer'",
        ),
        (
            [{"columns": "a", "artifact": "a.pkl"}],
            {"preprocess": "glue:f"},
            "either 'assemble' or 'preprocess'",
        ),
    ],
)
def test_bad_assemble_names_the_entry(tmp_path: Path, assemble, extra: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match="pipeline 'p'") as error:
        _parse({"pipelines": {"p": {"assemble": assemble, "graph_model": "g", **extra}}}, tmp_path)
    assert needle in str(error.value)
