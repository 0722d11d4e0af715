"""The `traffic:` block: every refusal is one line naming the key, at load, before serving."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from devtools.servers import script
from logic_service.config import parse_config
from logic_service.errors import ConfigError
from logic_service.traffic.spec import Route, Servable, TrafficSpec, bucket_bounds


def _parse(tmp_path: Path, traffic: object, **pipeline: object):
    body = {"transformer": "t.pkl", "graph_model": "credit", **pipeline, "traffic": traffic}
    return parse_config({"pipelines": {"credit": body}}, tmp_path / "pipelines.yaml")


def test_routes_sticky_key_and_shadow_parse_into_a_spec(tmp_path: Path) -> None:
    config = _parse(
        tmp_path,
        {
            "routes": {"stable": 95, "canary": 5, 3: 0},
            "sticky_key": "customer_id",
            "shadow": "canary",
            "shadow_sample": 0.1,
            "shadow_threshold": 0.5,
            "shadow_timeout": 0.25,
            "shadow_queue": 10,
            "shadow_graph_url": "http://candidate:8501/",
        },
    )
    assert config.pipelines["credit"].traffic == TrafficSpec(
        routes=(
            Route(Servable(label="stable"), 95),
            Route(Servable(label="canary"), 5),
            Route(Servable(version=3), 0),
        ),
        sticky_key="customer_id",
        shadow=Servable(label="canary"),
        shadow_sample=0.1,
        shadow_threshold=0.5,
        shadow_timeout=0.25,
        shadow_queue=10,
        shadow_graph_url="http://candidate:8501",
    )


def test_a_quoted_version_number_is_a_version_and_a_shadow_alone_keeps_the_own_target(
    tmp_path: Path,
) -> None:
    spec = _parse(tmp_path, {"shadow": "2"}, version_label="stable").pipelines["credit"].traffic
    assert spec.routes == () and spec.shadow == Servable(version=2)
    assert spec.shadow.name == "2" and Servable().name == "latest"


@pytest.mark.parametrize(
    ("traffic", "pipeline", "needle"),
    [
        ({"routes": {"stable": 0, "canary": 0}}, {}, "traffic.routes: weights sum to 0"),
        ({"routes": {"stable": -5, "canary": 10}}, {}, "traffic.routes.stable: weight -5"),
        ({"routes": {"stable": 99.5, "canary": 0.5}}, {}, "weight 99.5 is not a whole number"),
        ({"routes": {"canary": 1, "stable": 99999}}, {}, "canary: weight 1 of 100000 is below"),
        ({"routes": {}}, {}, "traffic.routes: expected a mapping"),
        ({"routes": {"sta/ble": 1}}, {}, "expected a label"),
        ({"routes": {0: 1}}, {}, "version 0 must be 1 or more"),
        ({"routes": {2: 1, "2": 1}}, {}, "2 is listed twice"),
        ({"routes": {"stable": 1}}, {"version_label": "stable"}, "remove the pipeline's 'version'"),
        ({"routes": {"stable": 95, "canary": 5}, "shadow": "canary", "sample": 1}, {}, "sample"),
        ({"shadow": "canary"}, {"version_label": "canary"}, "shadow: canary is the version"),
        ({"routes": {"canary": 100, "stable": 0}, "shadow": "canary"}, {}, "nothing to compare"),
        ({"shadow_sample": 0.5}, {}, "need(s) 'shadow'"),
        (
            {"shadow": "canary", "shadow_sample": 0},
            {},
            "traffic.shadow_sample: expected a fraction",
        ),
        ({"shadow": "canary", "shadow_sample": 1.5}, {}, "expected a fraction"),
        ({"shadow": "canary", "shadow_timeout": 0}, {}, "shadow_timeout: expected a positive"),
        ({"shadow": "canary", "shadow_queue": 0}, {}, "shadow_queue: expected a whole number"),
        ({"shadow": "canary", "shadow_threshold": "high"}, {}, "shadow_threshold: expected"),
        ({"shadow": "canary", "shadow_graph_url": "candidate:8501"}, {}, "not an http(s) URL"),
        ({"routes": {"a": 1, "b": 1}, "sticky_key": "id", "sticky_header": "X-Id"}, {}, "not both"),
        ({"routes": {"a": 1, "b": 1}, "sticky_header": "X Id"}, {}, "sticky_header: expected"),
        ({"routes": {"a": 1, "b": 1}, "sticky_key": ""}, {}, "sticky_key: expected"),
        ([1, 2], {}, "traffic: expected a mapping"),
    ],
)
def test_bad_traffic_is_refused_with_one_line_naming_the_key(
    tmp_path: Path, traffic: object, pipeline: dict, needle: str
) -> None:
    with pytest.raises(ConfigError) as error:
        _parse(tmp_path, traffic, **pipeline)
    message = str(error.value)
    assert needle in message
    assert "\n" not in message
    assert message.startswith(f"{tmp_path / 'pipelines.yaml'}: pipeline 'credit': traffic")


def test_traffic_applies_only_to_graph_pipelines(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'traffic' applies to 'graph_model'"):
        parse_config(
            {"pipelines": {"local": {"model": "m.pkl", "traffic": {"routes": {"a": 1}}}}},
            tmp_path / "pipelines.yaml",
        )


def test_bucket_bounds_follow_the_order_written() -> None:
    assert bucket_bounds([95, 5]) == [9500, 10000]
    assert bucket_bounds([1, 1, 1]) == [3333, 6666, 10000]
    assert bucket_bounds([0, 100]) == [0, 10000]


def test_logic_service_refuses_to_start_on_a_bad_traffic_block(tmp_path: Path) -> None:
    """Exit code 2 and one line on stderr, before any graph is asked anything."""
    path = tmp_path / "pipelines.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "graph_service_url": "http://127.0.0.1:9",
                "pipelines": {
                    "credit": {
                        "transformer": "t.pkl",
                        "graph_model": "credit",
                        "traffic": {"routes": {"stable": 0, "canary": 0}},
                    }
                },
            }
        )
    )
    result = subprocess.run(
        [script("logic-service"), "--config", str(path), "--bind", "127.0.0.1:0"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"logic-service: error: {path}: pipeline 'credit': traffic.routes: weights sum to 0; "
        "give at least one route a positive weight"
    ]
