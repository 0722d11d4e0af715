"""The request path of POST /get_score, readable top to bottom in `Scorer.score`.

Holds the loaded pipelines and, for graph-backed ones, the graph targets they route to (one
`RemoteTarget` per servable, shared by the pipelines that call it) and the traffic table that
picks one per request. No file I/O and no schema discovery per request.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from logic_service.deadline import Deadline
from logic_service.errors import BadRequestError, LogicError, UnknownPipelineError
from logic_service.graph.client import GraphClient
from logic_service.graph.target import BatchPolicy, RemoteTarget, TargetKey
from logic_service.metrics import Metrics
from logic_service.pipeline.runtime import Pipeline
from logic_service.settings import Settings
from logic_service.traffic.metrics import Snapshot, TrafficMetrics
from logic_service.traffic.routes import HeaderLookup, lane_spec, servables
from logic_service.traffic.table import TrafficTable

log = logging.getLogger(__name__)


@dataclass
class ScoreResult:
    """What one scoring call produced (stage timings go into the caller's `timings` dict)."""

    data: Any
    rows: int


@dataclass
class Readiness:
    """Ready when every pipeline can do its own work; graph health rides along in `targets`."""

    ready: bool
    reasons: dict[str, str]
    targets: dict[str, dict[str, Any]]


class Scorer:
    """Pipelines + graph targets: the service's data plane."""

    def __init__(
        self,
        pipelines: dict[str, Pipeline],
        client: GraphClient | None,
        default: str | None,
        settings: Settings,
        metrics: Metrics | None = None,
    ) -> None:
        self.pipelines = pipelines
        self.client = client
        self.default = default if default is not None else _only(pipelines)
        self.settings = settings
        self.graph_url = client.base_url if client is not None else None
        self.batching: dict[str, bool] = {}
        self._metrics = metrics
        self._by_key: dict[TargetKey, RemoteTarget] = {}
        self._clients: dict[str, GraphClient] = {client.base_url: client} if client else {}
        self._build_targets()
        # Which version answers each request, and the shadow (logic_service/traffic/).
        self.traffic = TrafficTable(
            pipelines, self, TrafficMetrics(metrics.registry) if metrics else None
        )
        self.traffic.apply({n: p.spec.traffic for n, p in pipelines.items() if p.graph_backed}, 1)

    def select(self, name: str | None) -> Pipeline:
        """The pipeline the body names, else the default; 400/404 when that is impossible."""
        if name is None:
            if self.default is None:
                raise BadRequestError(
                    'several pipelines are configured: name one with "model" '
                    f"({', '.join(self.pipelines)})"
                )
            name = self.default
        pipeline = self.pipelines.get(name)
        if pipeline is None:
            raise UnknownPipelineError(
                f"unknown pipeline {name!r}: this service has {', '.join(self.pipelines)}"
            )
        return pipeline

    def score(
        self,
        pipeline: Pipeline,
        data: Any,
        request_id: str,
        timings: dict[str, float],
        *,
        deadline: Deadline | None = None,
        trace: dict[str, Any] | None = None,
        header: HeaderLookup | None = None,
    ) -> ScoreResult:
        """Validate + features -> route -> model (graph target, maybe batched, or in-process)
        -> rules. `trace` receives the version that answered and the graph batch's id and
        size (also when the call fails); `header` looks up a sticky header."""
        deadline = deadline or Deadline(self.settings.request_timeout)
        start = time.perf_counter()
        prepared = pipeline.prepare(data)
        mark = time.perf_counter()
        timings["preprocess"] = mark - start
        if pipeline.graph_backed:
            lane = self.traffic.route(pipeline.name, data, header)  # the version that answers
            if trace is not None:
                trace["model_version"] = lane.name
            outputs = lane.target.predict(
                lane.spec,
                pipeline.name,
                prepared.features,
                prepared.rows,
                deadline=deadline,
                request_id=request_id,
                batching=self.batching[pipeline.name],
                trace=trace,
            )
            timings["graph"] = time.perf_counter() - mark
            self.traffic.shadow(lane, prepared, outputs, request_id)  # off the caller's path
        else:
            outputs = pipeline.predict_local(prepared.features)
            timings["model"] = time.perf_counter() - mark
        mark = time.perf_counter()
        data = pipeline.postprocess(outputs, prepared)
        timings["postprocess"] = time.perf_counter() - mark
        return ScoreResult(data, prepared.rows)

    def load_signatures(self, timeout: float = 5.0) -> dict[str, str]:
        """Read every graph signature now, each call bounded by `timeout` (start-up);
        whatever fails keeps being read in the background and /ready says 503 meanwhile."""
        problems = {}
        for target in self.unique_targets():
            try:
                target.read_signature(min(timeout, target.client.read_timeout))
            except LogicError as error:
                problems[target.label] = str(error)
        return problems

    def readiness(self) -> Readiness:
        """This pod can do its own work: artifacts loaded (they are, or it would not run) and
        each graph signature read once. Never calls the graph or waits on a lock.

        Only the versions taking traffic at start-up are waited for: a version a reload adds
        is read in the background, and until then its requests fail (503/504) while the
        other versions serve; taking the pod out of the Service would fail them all."""
        reasons: dict[str, str] = {}
        for name in self.pipelines:
            unread = [t for t in self.traffic.serving_targets(name) if not t.signatures.ever_read]
            for target in unread:
                target.ensure_reader()
            waited = [t for t in unread if id(t) in self._startup_targets]
            if not waited:
                reasons[name] = "ready"
            else:
                error = waited[0].signatures.last_error or "not tried yet"
                reasons[name] = f"graph signature of {waited[0].label} not read yet ({error})"
        # Shadows are listed, never waited for: they answer no caller.
        targets = {
            target.label: target.status()
            for target in [*self.unique_targets(), *self.traffic.shadow_targets()]
        }
        return Readiness(all(v == "ready" for v in reasons.values()), reasons, targets)

    def describe(self, pipeline: Pipeline, snapshot: Snapshot | None = None) -> dict[str, Any]:
        """GET /pipelines' entry: the pipeline's contract, what its target knows, its traffic
        (`snapshot`: the traffic metrics summed over the service's processes)."""
        info = pipeline.describe()
        serving = self.traffic.serving_targets(pipeline.name)
        if serving:
            target = serving[0]  # the versions a pipeline routes to share one signature
            signature = target.signatures.value
            info["model"]["signature_read"] = signature is not None
            info["model"]["batching"] = self.batching[pipeline.name]
            if signature is not None:
                info["model"]["inputs"] = {
                    name: {"dtype": str(t.dtype), "shape": t.shape}
                    for name, t in signature.inputs.items()
                }
            info["traffic"] = self.traffic.describe(pipeline.name, snapshot)
        return info

    def unique_targets(self) -> list[RemoteTarget]:
        """Every graph target requests can be routed to (one per servable)."""
        return list(self._by_key.values())

    def target_for(self, key: TargetKey, pipeline: Pipeline) -> RemoteTarget:
        """The shared target of a servable, made (with `pipeline`'s batch limits) if new."""
        target = self._by_key.get(key)
        if target is None:
            target = self._by_key[key] = self._new_target(key, [pipeline])
        return target

    def shadow_target(self, key: TargetKey, pipeline: Pipeline) -> RemoteTarget:
        """A target of its own for a shadow: its breaker and batcher are nobody else's."""
        return self._new_target(key, [pipeline], label=f"{key.label} (shadow)")

    def client_for(self, url: str) -> GraphClient:
        """The graph client for `url` (a shadow may live on another graph tier)."""
        client = self._clients.get(url)
        if client is None:
            settings = self.settings
            client = self._clients[url] = GraphClient(
                url,
                connect_timeout=settings.connect_timeout,
                read_timeout=settings.read_timeout,
                connect_retries=settings.connect_retries,
                pool_size=settings.pool_size,
            )
        return client

    def _build_targets(self) -> None:
        """One RemoteTarget per servable a pipeline routes to (its version, or each of its
        routes); its batch limits are the strictest of its pipelines'."""
        settings = self.settings
        by_key: dict[TargetKey, list[Pipeline]] = {}
        for pipeline in self.pipelines.values():
            spec = pipeline.spec
            if spec.graph is None:
                continue
            assert self.graph_url is not None
            self.batching[pipeline.name] = (
                settings.batching if spec.batching is None else spec.batching
            )
            for servable, _weight in servables(spec, spec.traffic):
                key = TargetKey.of(self.graph_url, lane_spec(spec.graph, servable))
                by_key.setdefault(key, []).append(pipeline)
        for key, members in by_key.items():
            self._by_key[key] = self._new_target(key, members)
        self._startup_targets = {id(target) for target in self._by_key.values()}

    def _new_target(
        self, key: TargetKey, members: list[Pipeline], label: str | None = None
    ) -> RemoteTarget:
        settings, metrics = self.settings, self._metrics
        rows = [p.spec.max_batch_rows or settings.max_batch_rows for p in members]
        waits = [
            settings.max_batch_wait_ms
            if p.spec.max_batch_wait_ms is None
            else p.spec.max_batch_wait_ms
            for p in members
        ]
        label = label or key.label
        target = RemoteTarget(
            key,
            self.client_for(key.url),
            breaker_failures=settings.breaker_failures,
            breaker_reset=settings.breaker_reset_seconds,
            slots=settings.graph_concurrency,
            policy=BatchPolicy(max_rows=min(rows), max_wait=min(waits) / 1000.0),
            on_breaker_change=metrics.set_breaker_state if metrics else None,
            observe_batch=(
                lambda rows, waits, label=label: metrics.observe_batch(label, rows, waits)
            )
            if metrics
            else None,
            count_call=metrics.count_graph_call if metrics else None,
            overdue=settings.overdue_rule,
            count_breaker_event=metrics.count_breaker_event if metrics else None,
            label=label,
        )
        if metrics is not None:
            metrics.set_breaker_state(label, 0)
        return target


def _only(pipelines: dict[str, Pipeline]) -> str | None:
    return next(iter(pipelines)) if len(pipelines) == 1 else None
