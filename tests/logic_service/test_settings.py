"""Settings from the environment: what gunicorn and the container use."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from devtools.servers import free_port, script
from logic_service.errors import ConfigError
from logic_service.graph.overdue import OverdueRule
from logic_service.settings import Settings


def test_env_names_the_file_and_overrides_the_graph_address() -> None:
    settings = Settings.from_env(
        {
            "LOGIC_CONFIG": "/srv/pipelines/pipelines.yaml",
            "GRAPH_SERVICE_URL": "http://graph:8501",
            "LOGIC_GRAPH_READ_TIMEOUT": "2.5",
            "LOGIC_GRAPH_RETRIES": "0",
        }
    )
    assert settings.config_path == Path("/srv/pipelines/pipelines.yaml")
    assert settings.graph_service_url == "http://graph:8501"
    assert settings.read_timeout == 2.5 and settings.connect_retries == 0


def test_explicit_path_wins_and_missing_path_is_explained() -> None:
    assert Settings.from_env({"LOGIC_CONFIG": "a.yaml"}, "b.yaml").config_path == Path("b.yaml")
    with pytest.raises(ConfigError, match="--config FILE or set LOGIC_CONFIG"):
        Settings.from_env({})


@pytest.mark.parametrize("value", ["soon", "-1"])
def test_bad_numbers_name_the_variable(value: str) -> None:
    with pytest.raises(ConfigError, match="LOGIC_GRAPH_READ_TIMEOUT"):
        Settings.from_env({"LOGIC_CONFIG": "a.yaml", "LOGIC_GRAPH_READ_TIMEOUT": value})


def test_batching_breaker_and_deadline_settings_from_env() -> None:
    settings = Settings.from_env(
        {
            "LOGIC_CONFIG": "a.yaml",
            "LOGIC_BATCHING": "off",
            "LOGIC_MAX_BATCH_ROWS": "64",
            "LOGIC_MAX_BATCH_WAIT_MS": "2.5",
            "LOGIC_BREAKER_FAILURES": "3",
            "LOGIC_BREAKER_RESET_SECONDS": "0.5",
            "LOGIC_REQUEST_TIMEOUT": "1.5",
            "LOGIC_TRAFFIC_POLL_SECONDS": "0",
        }
    )
    assert settings.traffic_poll_seconds == 0.0
    assert settings.batching is False and settings.max_batch_rows == 64
    assert settings.max_batch_wait_ms == 2.5
    assert settings.breaker_failures == 3 and settings.breaker_reset_seconds == 0.5
    assert settings.request_timeout == 1.5
    defaults = Settings.from_env({"LOGIC_CONFIG": "a.yaml"})
    assert (defaults.batching, defaults.max_batch_rows, defaults.max_batch_wait_ms) == (
        True,
        256,
        0.0,
    )
    assert (defaults.breaker_failures, defaults.request_timeout) == (5, 10.0)
    assert defaults.traffic_poll_seconds == 2.0


def test_overdue_rule_settings_from_env() -> None:
    settings = Settings.from_env(
        {
            "LOGIC_CONFIG": "a.yaml",
            "LOGIC_OVERDUE_FACTOR": "4",
            "LOGIC_OVERDUE_FLOOR_MS": "250",
            "LOGIC_OVERDUE_MIN_CALLS": "50",
        }
    )
    assert settings.overdue_rule == OverdueRule(factor=4.0, floor=0.25, min_calls=50)
    assert Settings.from_env({"LOGIC_CONFIG": "a.yaml"}).overdue_rule == OverdueRule(10.0, 1.0, 20)
    off = Settings.from_env({"LOGIC_CONFIG": "a.yaml", "LOGIC_OVERDUE_FACTOR": "0"})
    assert not off.overdue_rule.enabled


@pytest.mark.parametrize(
    ("name", "value", "needle"),
    [
        ("GRAPH_SERVICE_URL", "graph:8501", "e.g. http://graph:8501"),
        ("GRAPH_SERVICE_URL", "http://graph:8501/v1", "no path"),
        ("LOGIC_THREADS", "four", "LOGIC_THREADS='four' is not a whole number"),
        ("LOGIC_WORKERS", "0", "must be at least 1"),
        ("LOGIC_BATCHING", "maybe", "not a switch"),
        ("LOGIC_MAX_BATCH_ROWS", "0", "must be at least 1"),
        ("LOGIC_MAX_BATCH_WAIT_MS", "-1", "must not be negative"),
        ("LOGIC_REQUEST_TIMEOUT", "0", "greater than 0"),
        ("LOGIC_BREAKER_FAILURES", "1.5", "not a whole number"),
        ("LOGIC_GRAPH_RETRIES", "two", "not a whole number"),
        ("LOGIC_JSON_LOGS", "ja", "not a switch"),
        ("LOGIC_BIND", "5000", "HOST:PORT"),
        ("LOGIC_LOG_LEVEL", "loud", "LOGIC_LOG_LEVEL"),
        ("LOGIC_GRAPH_CONNECT_TIMEOUT", "nan", "finite"),
        ("LOGIC_OVERDUE_FACTOR", "1.5", "must be 0 (off) or at least 2"),
        ("LOGIC_OVERDUE_FACTOR", "-1", "must not be negative"),
        ("LOGIC_OVERDUE_FLOOR_MS", "0", "greater than 0"),
        ("LOGIC_OVERDUE_MIN_CALLS", "0", "must be at least 1"),
        (
            "LOGIC_TRAFFIC_POLL_SECONDS",
            "-2",
            "LOGIC_TRAFFIC_POLL_SECONDS='-2' must not be negative",
        ),
        ("LOGIC_TRAFFIC_POLL_SECONDS", "often", "is not a number"),
    ],
)
def test_every_bad_value_is_one_line_naming_it(name: str, value: str, needle: str) -> None:
    with pytest.raises(ConfigError) as error:
        Settings.from_env({"LOGIC_CONFIG": "a.yaml", name: value})
    assert needle in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"GRAPH_SERVICE_URL": "graph:8501"}, "GRAPH_SERVICE_URL='graph:8501' is not an http(s)"),
        ({"LOGIC_THREADS": "four"}, "LOGIC_THREADS='four'"),
        ({"LOGIC_BATCHING": "sometimes"}, "LOGIC_BATCHING='sometimes'"),
        ({"LOGIC_OVERDUE_FACTOR": "1"}, "LOGIC_OVERDUE_FACTOR='1' must be 0 (off) or at least 2"),
    ],
)
@pytest.mark.parametrize("check", [True, False])
def test_logic_service_refuses_bad_env_with_exit_2(
    sklearn_artifacts, env: dict[str, str], needle: str, check: bool
) -> None:
    """What an operator sees: one line, exit code 2, no traceback, with and without --check."""
    config = sklearn_artifacts.write_config(
        "settings_env.yaml",
        {"pipelines": {"p": {"transformer": "credit/transformer.pkl", "graph_model": "p"}}},
    )
    argv = [script("logic-service"), "--config", str(config), "--bind", f"127.0.0.1:{free_port()}"]
    result = subprocess.run(
        argv + (["--check"] if check else []),
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("logic-service: error: "), lines
    assert needle in lines[0]
    assert "Traceback" not in result.stderr


def test_a_file_graph_address_without_scheme_is_refused(sklearn_artifacts) -> None:
    config = sklearn_artifacts.write_config(
        "settings_file_url.yaml",
        {
            "graph_service_url": "graph:8501",
            "pipelines": {"p": {"transformer": "credit/transformer.pkl", "graph_model": "p"}},
        },
    )
    env = {k: v for k, v in os.environ.items() if k != "GRAPH_SERVICE_URL"}
    result = subprocess.run(
        [script("logic-service"), "--config", str(config), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert "graph_service_url='graph:8501' is not an http(s) URL" in last
    assert "Traceback" not in result.stderr
