"""The traffic a process serves now: one `RoutePlan` per graph pipeline, swapped whole.

`apply` builds every plan of a generation first and then replaces the dict in one
assignment, so a request sees either the old plan or the new one, never a mix. The graph
targets come from the `Scorer` (one per servable, shared with the pipelines that name it);
a shadow gets its own target, so its breaker and batcher are its own.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

from logic_service.errors import ConfigError, LogicError
from logic_service.graph.target import TargetKey
from logic_service.traffic.metrics import (
    FALLBACKS,
    ROUTED,
    SHADOW_DECISIONS,
    SHADOW_DIFF,
    SHADOW_JOBS,
    SHADOW_OUTCOMES,
    PairRecorder,
)
from logic_service.traffic.routes import (
    HeaderLookup,
    Lane,
    RoutePlan,
    lane_spec,
    servables,
)
from logic_service.traffic.shadow import ShadowPair, ShadowPlan, ShadowRunner
from logic_service.traffic.spec import Servable, TrafficSpec

if TYPE_CHECKING:
    from logic_service.graph.client import GraphClient
    from logic_service.graph.target import RemoteTarget
    from logic_service.pipeline.runtime import Pipeline, Prepared
    from logic_service.traffic.metrics import Snapshot, TrafficMetrics

log = logging.getLogger(__name__)

# What TF Serving (and graph-service) answer for a label its models.config does not define.
UNKNOWN_LABEL = "Unrecognized servable version label"


class Targets(Protocol):
    """What the traffic table needs from the Scorer."""

    graph_url: str | None
    batching: dict[str, bool]

    def target_for(self, key: TargetKey, pipeline: Pipeline) -> RemoteTarget: ...

    def shadow_target(self, key: TargetKey, pipeline: Pipeline) -> RemoteTarget: ...

    def client_for(self, url: str) -> GraphClient: ...


def _nothing() -> None:
    return None


class TrafficTable:
    """Route plans by pipeline, the generation they came from, and the shadow runner."""

    def __init__(
        self,
        pipelines: dict[str, Pipeline],
        targets: Targets,
        metrics: TrafficMetrics | None = None,
    ) -> None:
        self.pipelines = {name: p for name, p in pipelines.items() if p.graph_backed}
        self.targets = targets
        self.metrics = metrics
        self.plans: dict[str, RoutePlan] = {}
        self.specs: dict[str, TrafficSpec | None] = {}
        self.generation = 0
        self.runner = ShadowRunner()
        self._shadow_targets: dict[TargetKey, RemoteTarget] = {}

    # --- the request path ---------------------------------------------------------------

    def route(self, pipeline: str, data: Any, header: HeaderLookup | None = None) -> Lane:
        """The lane (version) that answers this request, counted."""
        lane = self.plans[pipeline].choose(data, header)
        lane.count()
        return lane

    def shadow(self, lane: Lane, prepared: Prepared, outputs: Any, request_id: str) -> None:
        """Hand the request to the shadow when this lane has one and the sample says so."""
        pair = lane.shadow
        if pair is not None and pair.sampled():
            self.runner.submit(pair, prepared.features, prepared.rows, outputs, request_id)

    # --- building and checking a generation ---------------------------------------------

    def apply(self, specs: dict[str, TrafficSpec | None], generation: int) -> None:
        """Serve `specs` (by pipeline; a pipeline left out keeps its plan) from now on."""
        plans = dict(self.plans)
        merged = {**self.specs, **{n: s for n, s in specs.items() if n in self.pipelines}}
        for name, spec in merged.items():
            plans[name] = self._plan(self.pipelines[name], spec)
        self.plans, self.specs, self.generation = plans, merged, generation
        if self.metrics is not None:
            self.metrics.generation.set(generation)

    def verify(self, specs: dict[str, TrafficSpec | None], timeout: float, where: str) -> list[str]:
        """Ask the graph about every label and version the specs name: ConfigError for a
        label it does not know; what else went wrong comes back as warnings (a graph that
        is down, a version still loading: requests will tell, the start or reload goes on)."""
        warnings: list[str] = []
        asked: set[tuple[str, str]] = set()
        for name, spec in specs.items():
            if spec is None or name not in self.pipelines:
                continue
            graph = self.pipelines[name].spec.graph
            assert graph is not None
            named = [(route.servable, self.targets.graph_url) for route in spec.routes]
            if spec.shadow is not None:
                named.append((spec.shadow, spec.shadow_graph_url or self.targets.graph_url))
            for servable, url in named:
                assert url is not None
                path = lane_spec(graph, servable).path()
                if (url, path) in asked:
                    continue
                asked.add((url, path))
                try:
                    self.targets.client_for(url).metadata(path, timeout=timeout)
                except LogicError as error:
                    if servable.label is not None and UNKNOWN_LABEL in str(error):
                        raise ConfigError(
                            f"{where}: pipeline {name!r}: traffic names label "
                            f"{servable.label!r}, which graph model {graph.model!r} at {url} "
                            f"does not have: point it at a version first (models-config label "
                            f"{graph.model} {servable.label}=N) or fix the name"
                        ) from None
                    warnings.append(f"pipeline {name!r}: {graph.model}@{servable.name}: {error}")
        return warnings

    def _plan(self, pipeline: Pipeline, spec: TrafficSpec | None) -> RoutePlan:
        graph = pipeline.spec.graph
        url = self.targets.graph_url
        assert graph is not None and url is not None
        shadow = self._shadow_plan(pipeline, spec) if spec is not None else None
        same_graph = spec is None or spec.shadow_graph_url in (None, url)
        lanes = []
        for servable, weight in servables(pipeline.spec, spec):
            target_spec = lane_spec(graph, servable)
            pair = None
            compared = weight > 0 and not (same_graph and spec and servable == spec.shadow)
            if shadow is not None and compared:
                pair = ShadowPair(
                    shadow, servable.name, self._recorder(pipeline.name, servable, shadow)
                )
            lanes.append(
                Lane(
                    name=servable.name,
                    weight=weight,
                    spec=target_spec,
                    target=self.targets.target_for(TargetKey.of(url, target_spec), pipeline),
                    count=self.metrics.routed_counter(pipeline.name, servable.name)
                    if self.metrics
                    else _nothing,
                    shadow=pair,
                )
            )
        return RoutePlan(
            pipeline=pipeline.name,
            lanes=tuple(lanes),
            sticky_key=spec.sticky_key if spec else None,
            sticky_header=spec.sticky_header if spec else None,
            count_fallback=self.metrics.fallback_counter(pipeline.name) if self.metrics else None,
        )

    def _shadow_plan(self, pipeline: Pipeline, spec: TrafficSpec) -> ShadowPlan | None:
        if spec.shadow is None:
            return None
        graph = pipeline.spec.graph
        assert graph is not None
        url = spec.shadow_graph_url or self.targets.graph_url
        assert url is not None
        target_spec = replace(lane_spec(graph, spec.shadow), timeout=spec.shadow_timeout)
        key = TargetKey.of(url, target_spec)
        target = self._shadow_targets.get(key)
        if target is None:
            target = self._shadow_targets[key] = self.targets.shadow_target(key, pipeline)
        return ShadowPlan(
            pipeline=pipeline.name,
            name=spec.shadow.name,
            spec=target_spec,
            target=target,
            sample=spec.shadow_sample,
            threshold=spec.shadow_threshold,
            timeout=spec.shadow_timeout,
            queue_limit=spec.shadow_queue,
            batching=self.targets.batching.get(pipeline.name, True),
        )

    def _recorder(self, pipeline: str, primary: Servable, shadow: ShadowPlan) -> Any:
        if self.metrics is None:
            return PairRecorder.discard()
        return self.metrics.pair(pipeline, primary.name, shadow.name)

    # --- what readiness and /pipelines see -----------------------------------------------

    def snapshot(self) -> Snapshot | None:
        """The traffic metrics summed over the service's processes (None without metrics)."""
        return None if self.metrics is None else self.metrics.snapshot()

    def serving_targets(self, pipeline: str) -> list[RemoteTarget]:
        """The targets requests of `pipeline` can reach now (lanes with a positive weight)."""
        plan = self.plans.get(pipeline)
        return [] if plan is None else [lane.target for lane in plan.serving()]

    def shadow_targets(self) -> list[RemoteTarget]:
        shadows = {
            id(lane.shadow.plan.target): lane.shadow.plan.target
            for plan in self.plans.values()
            for lane in plan.lanes
            if lane.shadow is not None
        }
        return list(shadows.values())

    def describe(self, pipeline: str, snapshot: Snapshot | None) -> dict[str, Any] | None:
        """/pipelines' `traffic` entry: weights, requests per version, the live comparison."""
        plan = self.plans.get(pipeline)
        if plan is None:
            return None
        total = sum(lane.weight for lane in plan.lanes)

        def count(name: str, **labels: str) -> int:
            return 0 if snapshot is None else int(snapshot.sum(name, pipeline=pipeline, **labels))

        info: dict[str, Any] = {
            "generation": self.generation,
            "routes": [
                {
                    "version": lane.name,
                    "weight": lane.weight,
                    "share": lane.weight / total,
                    "target": lane.target.label,
                    "requests": count(f"{ROUTED}_total", version=lane.name),
                }
                for lane in plan.lanes
            ],
            "sticky_key": plan.sticky_key,
            "sticky_header": plan.sticky_header,
            "sticky_fallbacks": count(f"{FALLBACKS}_total"),
            "shadow": None,
        }
        pairs = [lane.shadow for lane in plan.lanes if lane.shadow is not None]
        if pairs:  # a lane has a shadow only when the spec names one
            shadow = pairs[0].plan
            info["shadow"] = {
                "version": shadow.name,
                "target": shadow.target.label,
                "graph": shadow.target.key.url,
                "sample": shadow.sample,
                "threshold": shadow.threshold,
                "timeout": shadow.timeout,
                "queue": shadow.queue_limit,
                "breaker": shadow.target.breaker.snapshot(),
                "comparisons": [_comparison(pair, pipeline, snapshot) for pair in pairs],
            }
        return info


def _comparison(pair: ShadowPair, pipeline: str, snapshot: Snapshot | None) -> dict[str, Any]:
    """One (primary, shadow) pair's figures, summed over the service's processes."""
    labels = {"pipeline": pipeline, "primary": pair.primary, "shadow": pair.plan.name}
    info: dict[str, Any] = {"primary": pair.primary}
    if snapshot is None:
        return info
    jobs = {
        outcome: int(snapshot.sum(f"{SHADOW_JOBS}_total", outcome=outcome, **labels))
        for outcome in SHADOW_OUTCOMES
    }
    compared = int(snapshot.sum(f"{SHADOW_DIFF}_count", **labels))
    total = snapshot.sum(f"{SHADOW_DIFF}_sum", **labels)
    buckets = snapshot.buckets(SHADOW_DIFF, **labels)
    agree = snapshot.sum(f"{SHADOW_DECISIONS}_total", agreement="agree", **labels)
    decided = snapshot.sum(f"{SHADOW_DECISIONS}_total", **labels)
    info.update(
        jobs=jobs,
        compared_values=compared,
        mean_abs_diff=total / compared if compared else None,
        p50_abs_diff_at_most=_quantile(buckets, 0.5, compared),
        p99_abs_diff_at_most=_quantile(buckets, 0.99, compared),
        agreement_rate=agree / decided if decided else None,
    )
    return info


def _quantile(buckets: list[tuple[float, float]], q: float, count: int) -> float | None:
    """The upper bound of the histogram bucket holding quantile `q` (None without values)."""
    if not count:
        return None
    for upper, cumulative in buckets:
        if cumulative >= q * count:
            return upper
    return None
