"""Traffic metrics: requests per version, sticky fallbacks, the shadow comparison, reloads.

Registered in the app's registry (one per app, no module globals); under gunicorn every
process writes its own files and `snapshot()` reads them all, so /pipelines shows the same
numbers as /metrics, for every worker together.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from logic_service.metrics import collected

# |primary - shadow| per output value: 1e-6 is "the same model", 0.5 and up "another one".
DIFF_BUCKETS = (1e-6, 1e-4, 1e-3, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
SHADOW_OUTCOMES = ("ok", "error", "timeout", "unavailable", "dropped")
ROUTED = "logic_routed_requests"
FALLBACKS = "logic_sticky_fallbacks"
SHADOW_JOBS = "logic_shadow_jobs"
SHADOW_DIFF = "logic_shadow_score_diff"
SHADOW_DECISIONS = "logic_shadow_decisions"


class TrafficMetrics:
    """The families, and label children looked up once per lane (not per request)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.routed = Counter(
            ROUTED,
            "Scoring requests routed to each version (label, version number or latest).",
            ["pipeline", "version"],
            registry=registry,
        )
        self.fallbacks = Counter(
            FALLBACKS,
            "Requests of a sticky pipeline without the sticky key, routed by weight at random.",
            ["pipeline"],
            registry=registry,
        )
        self.shadow_jobs = Counter(
            SHADOW_JOBS,
            "Shadow scorings by outcome: ok, error, timeout, unavailable (breaker open or graph "
            "unreachable), dropped (queue full: never sent).",
            ["pipeline", "primary", "shadow", "outcome"],
            registry=registry,
        )
        self.shadow_diff = Histogram(
            SHADOW_DIFF,
            "Absolute difference between the primary's and the shadow's score, per output value.",
            ["pipeline", "primary", "shadow"],
            buckets=DIFF_BUCKETS,
            registry=registry,
        )
        self.shadow_decisions = Counter(
            SHADOW_DECISIONS,
            "Output values compared at the pipeline's shadow_threshold: agree when both scores "
            "are on the same side of it.",
            ["pipeline", "primary", "shadow", "agreement"],
            registry=registry,
        )
        self.generation = Gauge(
            "logic_traffic_generation",
            "Traffic generation a process serves (1 at start, +1 per applied reload); the "
            "lowest of the live processes.",
            multiprocess_mode="livemin",
            registry=registry,
        )
        self.reloads = Counter(
            "logic_traffic_reloads",
            "Traffic reloads judged, by outcome (applied, refused).",
            ["outcome"],
            registry=registry,
        )

    def routed_counter(self, pipeline: str, version: str) -> Any:
        return self.routed.labels(pipeline, version).inc

    def fallback_counter(self, pipeline: str) -> Any:
        return self.fallbacks.labels(pipeline).inc

    def pair(self, pipeline: str, primary: str, shadow: str) -> PairRecorder:
        labels = (pipeline, primary, shadow)
        return PairRecorder(
            outcomes={o: self.shadow_jobs.labels(*labels, o) for o in SHADOW_OUTCOMES},
            diff=self.shadow_diff.labels(*labels),
            agree=self.shadow_decisions.labels(*labels, "agree"),
            disagree=self.shadow_decisions.labels(*labels, "disagree"),
        )

    def snapshot(self) -> Snapshot:
        """Every traffic sample, summed over the service's processes."""
        values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = defaultdict(float)
        for metric in collected(self.registry).collect():
            if not metric.name.startswith(("logic_routed", "logic_sticky", "logic_shadow")):
                continue
            for sample in metric.samples:
                values[(sample.name, tuple(sorted(sample.labels.items())))] += sample.value
        return Snapshot(dict(values))


@dataclass
class PairRecorder:
    """What one (pipeline, primary, shadow) pair records into."""

    outcomes: dict[str, Any]
    diff: Any
    agree: Any
    disagree: Any

    @classmethod
    def discard(cls) -> PairRecorder:
        """A recorder that records nothing (an app built without metrics)."""
        return cls({o: _NOOP for o in SHADOW_OUTCOMES}, _NOOP, _NOOP, _NOOP)

    def outcome(self, outcome: str) -> None:
        self.outcomes[outcome].inc()

    def compared(self, diffs: np.ndarray, agreement: np.ndarray | None) -> None:
        for value in diffs.tolist():
            self.diff.observe(value)
        if agreement is not None and agreement.size:
            agreed = int(np.count_nonzero(agreement))
            if agreed:
                self.agree.inc(agreed)
            if agreement.size > agreed:
                self.disagree.inc(agreement.size - agreed)


class _Discard:
    def inc(self, amount: float = 1) -> None:
        return None

    def observe(self, amount: float) -> None:
        return None


_NOOP = _Discard()


@dataclass
class Snapshot:
    """Summed samples by (sample name, sorted labels)."""

    values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = field(default_factory=dict)

    def sum(self, name: str, **labels: str) -> float:
        """The sum of `name` over every series whose labels include `labels`."""
        wanted = set(labels.items())
        return sum(
            value
            for (sample, series), value in self.values.items()
            if sample == name and wanted <= set(series)
        )

    def buckets(self, name: str, **labels: str) -> list[tuple[float, float]]:
        """(upper bound, cumulative count) of a histogram's matching series, summed."""
        totals: dict[float, float] = defaultdict(float)
        wanted = set(labels.items())
        for (sample, series), value in self.values.items():
            if sample == f"{name}_bucket" and wanted <= set(series):
                totals[float(dict(series)["le"])] += value
        return sorted(totals.items())
