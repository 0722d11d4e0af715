"""A pipeline's `traffic:` block (YAML) -> a typed, checked `TrafficSpec`. No I/O.

Everything that can be judged from the file alone is judged here, with a one-line error
naming the key: weights, the shadow against the versions that take traffic, the sticky key.
Whether a label exists is the graph tier's to say (`table.TrafficTable.verify`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from logic_service.errors import ConfigError
from logic_service.graph.address import validate_url

# Routes split the hash space into this many buckets: a weight's resolution is 0.01%.
BUCKETS = 10_000
DEFAULT_SHADOW_TIMEOUT = 1.0
DEFAULT_SHADOW_QUEUE = 100
TRAFFIC_KEYS = {
    "routes",
    "sticky_key",
    "sticky_header",
    "shadow",
    "shadow_sample",
    "shadow_threshold",
    "shadow_timeout",
    "shadow_queue",
    "shadow_graph_url",
}
# TF Serving's REST path segment for a label is `[^/:]+`; whitespace would need quoting.
_LABEL = re.compile(r"^[^/:\s]+$")
_HEADER = re.compile(r"^[A-Za-z0-9-]+$")


@dataclass(frozen=True)
class Servable:
    """One version of the pipeline's graph model: a version number or a label."""

    version: int | None = None
    label: str | None = None

    @property
    def name(self) -> str:
        """What `X-Model-Version`, metrics and /pipelines call it: `canary`, `2`, `latest`."""
        if self.label is not None:
            return self.label
        return "latest" if self.version is None else str(self.version)


@dataclass(frozen=True)
class Route:
    """A servable and its whole-number weight."""

    servable: Servable
    weight: int


@dataclass(frozen=True)
class TrafficSpec:
    """Routes, sticky key and shadow of one pipeline, as declared (and as reloaded)."""

    routes: tuple[Route, ...] = ()  # empty: the pipeline's own version/label takes it all
    sticky_key: str | None = None  # a field of the request's first record
    sticky_header: str | None = None  # or an HTTP header
    shadow: Servable | None = None
    shadow_sample: float = 1.0
    shadow_threshold: float | None = None
    shadow_timeout: float = DEFAULT_SHADOW_TIMEOUT
    shadow_queue: int = DEFAULT_SHADOW_QUEUE
    shadow_graph_url: str | None = None


def parse_traffic(
    raw: Any, version: int | None, version_label: str | None, where: str
) -> TrafficSpec:
    """Check a `traffic:` mapping of a graph pipeline whose own target is `version` /
    `version_label` (both None: latest); raise ConfigError naming the key."""
    where = f"{where}: traffic"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(raw).__name__}")
    unknown = sorted(str(key) for key in raw if key not in TRAFFIC_KEYS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)} "
            f"(allowed: {', '.join(sorted(TRAFFIC_KEYS))})"
        )
    routes = _routes(raw.get("routes"), f"{where}.routes")
    if routes and (version is not None or version_label is not None):
        raise ConfigError(
            f"{where}.routes names the versions this pipeline calls: remove the pipeline's "
            "'version' / 'version_label' (list that version in routes instead)"
        )
    sticky_key, sticky_header = raw.get("sticky_key"), raw.get("sticky_header")
    if sticky_key is not None and sticky_header is not None:
        raise ConfigError(
            f"{where}: set 'sticky_key' (a record field) or 'sticky_header', not both"
        )
    if sticky_key is not None and (not isinstance(sticky_key, str) or not sticky_key):
        raise ConfigError(f"{where}.sticky_key: expected a field name, got {sticky_key!r}")
    if sticky_header is not None and (
        not isinstance(sticky_header, str) or not _HEADER.match(sticky_header)
    ):
        raise ConfigError(
            f"{where}.sticky_header: expected an HTTP header name such as X-Customer-ID, "
            f"got {sticky_header!r}"
        )
    shadow = None if raw.get("shadow") is None else _servable(raw["shadow"], f"{where}.shadow")
    shadow_keys = sorted(key for key in raw if key.startswith("shadow_"))
    if shadow is None and shadow_keys:
        raise ConfigError(
            f"{where}: {', '.join(shadow_keys)} need(s) 'shadow' (the version to compare)"
        )
    shadow_url = raw.get("shadow_graph_url")
    if shadow_url is not None:
        shadow_url = validate_url(str(shadow_url), f"{where}.shadow_graph_url")
    if shadow is not None and shadow_url is None:
        _shadow_differs(shadow, routes, Servable(version, version_label), where)
    return TrafficSpec(
        routes=routes,
        sticky_key=sticky_key,
        sticky_header=sticky_header,
        shadow=shadow,
        shadow_sample=_fraction(raw.get("shadow_sample", 1.0), f"{where}.shadow_sample"),
        shadow_threshold=_threshold(raw.get("shadow_threshold"), f"{where}.shadow_threshold"),
        shadow_timeout=_seconds(
            raw.get("shadow_timeout", DEFAULT_SHADOW_TIMEOUT), f"{where}.shadow_timeout"
        ),
        shadow_queue=_count(raw.get("shadow_queue", DEFAULT_SHADOW_QUEUE), f"{where}.shadow_queue"),
        shadow_graph_url=shadow_url,
    )


def bucket_bounds(weights: list[int]) -> list[int]:
    """Exclusive upper bucket of each route: floor(BUCKETS * cumulative weight / total)."""
    total = sum(weights)
    bounds, running = [], 0
    for weight in weights:
        running += weight
        bounds.append(BUCKETS * running // total)
    return bounds


def _routes(raw: Any, where: str) -> tuple[Route, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(
            f"{where}: expected a mapping of label or version to weight, e.g. "
            "{stable: 95, canary: 5}"
        )
    routes: list[Route] = []
    for key, weight in raw.items():
        servable = _servable(key, f"{where}: key {key!r}")
        if isinstance(weight, bool) or not isinstance(weight, int) or weight < 0:
            raise ConfigError(
                f"{where}.{servable.name}: weight {weight!r} is not a whole number >= 0 "
                "(weights are relative: 95 and 5, or 995 and 5 for 0.5%)"
            )
        if any(route.servable == servable for route in routes):
            raise ConfigError(f"{where}: {servable.name} is listed twice")
        routes.append(Route(servable, weight))
    weights = [route.weight for route in routes]
    if sum(weights) <= 0:
        raise ConfigError(
            f"{where}: weights sum to {sum(weights)}; give at least one route a positive weight"
        )
    lower = 0
    for route, upper in zip(routes, bucket_bounds(weights), strict=True):
        if route.weight > 0 and upper == lower:
            raise ConfigError(
                f"{where}.{route.servable.name}: weight {route.weight} of {sum(weights)} is "
                f"below the 1/{BUCKETS} resolution of the split and would get no request; "
                "raise it or set it to 0"
            )
        lower = upper
    return tuple(routes)


def _servable(value: Any, where: str) -> Servable:
    """A version number (an integer, or digits) or a label."""
    if isinstance(value, bool):
        raise ConfigError(f"{where}: expected a label or a version number, got {value!r}")
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        number = int(value)
        if number < 1:
            raise ConfigError(f"{where}: version {value!r} must be 1 or more")
        return Servable(version=number)
    if isinstance(value, str) and _LABEL.match(value):
        return Servable(label=value)
    raise ConfigError(
        f"{where}: expected a label (stable, canary: no '/', ':' or spaces) or a version "
        f"number, got {value!r}"
    )


def _shadow_differs(shadow: Servable, routes: tuple[Route, ...], own: Servable, where: str) -> None:
    """A shadow compared with nothing but itself is a mistake: refuse it."""
    serving = [route.servable for route in routes if route.weight > 0] or [own]
    if all(servable == shadow for servable in serving):
        raise ConfigError(
            f"{where}.shadow: {shadow.name} is the version that answers every request, so "
            "there is nothing to compare it with; shadow another version"
        )


def _fraction(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise ConfigError(
            f"{where}: expected a fraction of requests in (0, 1], e.g. 0.1, got {value!r}"
        )
    return float(value)


def _threshold(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{where}: expected the score that decides, e.g. 0.5, got {value!r}")
    return float(value)


def _seconds(value: Any, where: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigError(f"{where}: expected a positive number of seconds, got {value!r}")
    return float(value)


def _count(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where}: expected a whole number of jobs >= 1, got {value!r}")
    return value
