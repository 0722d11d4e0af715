"""Process-level settings: where the pipeline file is and how to talk to the graph tier.

One typed object, built explicitly (tests) or from the environment (gunicorn, containers).
The pipeline file itself is parsed by `config.py`; env vars here override what it says.
Every LOGIC_* value is checked here, before anything starts: a bad one is a one-line
ConfigError (exit 2), never a traceback from deep inside gunicorn.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from logic_service.errors import ConfigError
from logic_service.graph.address import validate_url
from logic_service.graph.overdue import OverdueRule

DEFAULT_MAX_CONTENT_LENGTH = 8 * 1024 * 1024
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_LOG_LEVELS = {"debug", "info", "warning", "error", "critical"}
_BIND = re.compile(r"^(unix:.+|\[?[\w.:-]*\]?:\d{1,5})$")
# Read by gunicorn.conf.py; checked here so `logic-service` refuses them with one line.
_SERVER_INTEGERS = {
    "LOGIC_WORKERS": 1,
    "LOGIC_THREADS": 1,
    "LOGIC_WORKER_TIMEOUT": 0,
    "LOGIC_GRACEFUL_TIMEOUT": 0,
    "LOGIC_KEEPALIVE": 0,
}


@dataclass(frozen=True)
class Settings:
    """Everything `create_app` needs besides the pipeline file's own content."""

    config_path: Path
    graph_service_url: str | None = None  # overrides the file's graph_service_url
    compiled_dir: Path | None = None  # overrides the file's compiled_dir (LOGIC_COMPILED_DIR)
    connect_timeout: float = 2.0
    read_timeout: float = 10.0  # the most one graph call may take (the deadline may cut it)
    connect_retries: int = 2
    max_content_length: int = DEFAULT_MAX_CONTENT_LENGTH
    pool_size: int = 16
    json_logs: bool = True
    request_timeout: float = 10.0  # per-request budget; X-Request-Timeout-Ms may lower it
    batching: bool = True  # default for pipelines that do not set `batching:`
    max_batch_rows: int = 256
    max_batch_wait_ms: float = 0.0
    graph_concurrency: int = 1  # graph calls in flight per target and worker process
    breaker_failures: int = 5  # 0 turns the breaker off
    breaker_reset_seconds: float = 5.0
    # A graph call in flight past max(floor, factor x recent p99) opens the breaker
    # (logic_service/graph/overdue.py); factor 0 turns that off.
    overdue_factor: float = 10.0
    overdue_floor_seconds: float = 1.0
    overdue_min_calls: int = 20
    traffic_poll_seconds: float = 2.0  # how often workers look for a changed pipeline file

    @property
    def overdue_rule(self) -> OverdueRule:
        return OverdueRule(self.overdue_factor, self.overdue_floor_seconds, self.overdue_min_calls)

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, config_path: str | Path | None = None
    ) -> Settings:
        """Read LOGIC_CONFIG, GRAPH_SERVICE_URL and the LOGIC_* tuning variables."""
        env = os.environ if environ is None else environ
        path = config_path or env.get("LOGIC_CONFIG")
        if not path:
            raise ConfigError(
                "no pipeline file: pass --config FILE or set LOGIC_CONFIG=/path/to/pipelines.yaml"
            )
        _check_server_env(env)
        url = env.get("GRAPH_SERVICE_URL") or None
        if url is not None:
            url = validate_url(url)
        compiled = env.get("LOGIC_COMPILED_DIR") or None
        return cls(
            config_path=Path(path),
            graph_service_url=url,
            compiled_dir=Path(compiled).resolve() if compiled else None,
            connect_timeout=_number(env, "LOGIC_GRAPH_CONNECT_TIMEOUT", 2.0, positive=True),
            read_timeout=_number(env, "LOGIC_GRAPH_READ_TIMEOUT", 10.0, positive=True),
            connect_retries=_integer(env, "LOGIC_GRAPH_RETRIES", 2, minimum=0),
            max_content_length=_integer(
                env, "LOGIC_MAX_CONTENT_LENGTH", DEFAULT_MAX_CONTENT_LENGTH, minimum=1
            ),
            pool_size=_integer(env, "LOGIC_GRAPH_POOL_SIZE", 16, minimum=1),
            json_logs=_flag(env, "LOGIC_JSON_LOGS", True),
            request_timeout=_number(env, "LOGIC_REQUEST_TIMEOUT", 10.0, positive=True),
            batching=_flag(env, "LOGIC_BATCHING", True),
            max_batch_rows=_integer(env, "LOGIC_MAX_BATCH_ROWS", 256, minimum=1),
            max_batch_wait_ms=_number(env, "LOGIC_MAX_BATCH_WAIT_MS", 0.0),
            graph_concurrency=_integer(env, "LOGIC_GRAPH_CONCURRENCY", 1, minimum=1),
            breaker_failures=_integer(env, "LOGIC_BREAKER_FAILURES", 5, minimum=0),
            breaker_reset_seconds=_number(env, "LOGIC_BREAKER_RESET_SECONDS", 5.0, positive=True),
            overdue_factor=_overdue_factor(env),
            overdue_floor_seconds=_number(env, "LOGIC_OVERDUE_FLOOR_MS", 1000.0, positive=True)
            / 1000.0,
            overdue_min_calls=_integer(env, "LOGIC_OVERDUE_MIN_CALLS", 20, minimum=1),
            traffic_poll_seconds=_number(env, "LOGIC_TRAFFIC_POLL_SECONDS", 2.0),
        )


def _check_server_env(env: Mapping[str, str]) -> None:
    for name, minimum in _SERVER_INTEGERS.items():
        _integer(env, name, minimum, minimum=minimum)
    bind = env.get("LOGIC_BIND")
    if bind and not _BIND.match(bind):
        raise ConfigError(f"LOGIC_BIND={bind!r} is not HOST:PORT (e.g. 0.0.0.0:5000)")
    level = env.get("LOGIC_LOG_LEVEL")
    if level and level.lower() not in _LOG_LEVELS:
        raise ConfigError(
            f"LOGIC_LOG_LEVEL={level!r} is not one of {', '.join(sorted(_LOG_LEVELS))}"
        )


def _overdue_factor(env: Mapping[str, str]) -> float:
    value = _number(env, "LOGIC_OVERDUE_FACTOR", 10.0)
    if 0 < value < 2:
        raise ConfigError(
            f"LOGIC_OVERDUE_FACTOR={env['LOGIC_OVERDUE_FACTOR']!r} must be 0 (off) or at least 2: "
            "a graph call is overdue at this multiple of its recent p99 latency (default 10)"
        )
    return value


def _number(env: Mapping[str, str], name: str, default: float, *, positive: bool = False) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if not math.isfinite(value):
        raise ConfigError(f"{name}={raw!r} is not a finite number")
    if positive and value <= 0:
        raise ConfigError(f"{name}={raw!r} must be greater than 0")
    if value < 0:
        raise ConfigError(f"{name}={raw!r} must not be negative")
    return value


def _integer(env: Mapping[str, str], name: str, default: int, *, minimum: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise ConfigError(f"{name}={raw!r} must be at least {minimum}")
    return value


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise ConfigError(f"{name}={raw!r} is not a switch: use 1/0, true/false, yes/no or on/off")
