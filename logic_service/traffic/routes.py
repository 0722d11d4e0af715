"""Which version answers a request: weighted lanes, and the sticky hash another service can
reproduce.

A request goes to one lane as a whole (all its records, one graph call), so requests routed to
different versions never share a batch: each lane has its own `RemoteTarget`.

The assignment, so that any service can compute it: the lanes split the bucket space
[0, 10000) in the order they are written, lane i taking buckets up to
floor(10000 * (w1 + ... + wi) / (w1 + ... + wn)). A request with a sticky key k (a string;
an integer field is written in decimal) falls in bucket
`int.from_bytes(sha256(k.encode("utf-8")).digest()[:8], "big") % 10000`; a request without
one in a uniformly random bucket.
"""

from __future__ import annotations

import bisect
import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from logic_service.config import GraphTarget, PipelineSpec
from logic_service.traffic.spec import BUCKETS, Servable, TrafficSpec, bucket_bounds

if TYPE_CHECKING:
    from logic_service.graph.target import RemoteTarget
    from logic_service.traffic.shadow import ShadowPair

# header(name) -> the request's value of that HTTP header, or None.
HeaderLookup = Callable[[str], str | None]


def bucket(key: str) -> int:
    """The sticky bucket of `key`: first 8 bytes of SHA-256 (UTF-8), big-endian, mod 10000."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def sticky_value(data: Any, field: str) -> str | None:
    """The key of a request's first record (records, one record, or an object of columns);
    None when absent or neither a non-empty string nor an integer."""
    record = data[0] if isinstance(data, list) and data else data
    if not isinstance(record, dict):
        return None
    value = record.get(field)
    if isinstance(value, list):  # columns: {"customer_id": ["c1", "c2"], ...}
        value = value[0] if value else None
    return key_text(value)


def key_text(value: Any) -> str | None:
    """A sticky key's text: strings as they are, integers in decimal, nothing else."""
    if isinstance(value, str):
        return value or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def servables(spec: PipelineSpec, traffic: TrafficSpec | None) -> list[tuple[Servable, int]]:
    """The lanes of a graph pipeline with their weights: its routes, or its own target."""
    assert spec.graph is not None
    if traffic is not None and traffic.routes:
        return [(route.servable, route.weight) for route in traffic.routes]
    return [(Servable(spec.graph.version, spec.graph.version_label), 1)]


def lane_spec(graph: GraphTarget, servable: Servable) -> GraphTarget:
    """The pipeline's graph target pointed at one version or label."""
    return replace(graph, version=servable.version, version_label=servable.label)


@dataclass(frozen=True, eq=False)
class Lane:
    """One version a pipeline routes to: where its requests go and what they count."""

    name: str  # X-Model-Version: a label, a version number, or "latest"
    weight: int
    spec: GraphTarget
    target: RemoteTarget
    count: Callable[[], None]  # one more request routed here
    shadow: ShadowPair | None = None  # also score this lane's requests with the shadow


@dataclass(frozen=True, eq=False)
class RoutePlan:
    """A pipeline's lanes as one immutable value: a reload swaps the whole plan."""

    pipeline: str
    lanes: tuple[Lane, ...]
    sticky_key: str | None = None
    sticky_header: str | None = None
    count_fallback: Callable[[], None] | None = None  # a sticky request without its key
    bounds: tuple[int, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        bounds = tuple(bucket_bounds([lane.weight for lane in self.lanes]))
        object.__setattr__(self, "bounds", bounds)  # derived once; the plan stays immutable

    def choose(self, data: Any, header: HeaderLookup | None) -> Lane:
        """The lane for one request (by its sticky key when the pipeline has one)."""
        lanes = self.lanes
        if len(lanes) == 1:
            return lanes[0]
        key = None
        if self.sticky_key is not None:
            key = sticky_value(data, self.sticky_key)
        elif self.sticky_header is not None and header is not None:
            key = key_text(header(self.sticky_header))
        if key is not None:
            point = bucket(key)
        else:
            if (self.sticky_key or self.sticky_header) and self.count_fallback is not None:
                self.count_fallback()
            point = random.randrange(BUCKETS)
        return lanes[bisect.bisect_right(self.bounds, point)]

    def serving(self) -> list[Lane]:
        """Lanes with a positive weight: the ones requests can reach."""
        return [lane for lane in self.lanes if lane.weight > 0]
