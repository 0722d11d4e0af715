"""The request path of POST /get_score, readable top to bottom in `Scorer.score`.

Holds the loaded pipelines and, for graph-backed ones, the graph target each calls (one
`RemoteTarget` per servable, shared by the pipelines that call it). No file I/O and no
schema discovery per request.
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
        self.targets: dict[str, RemoteTarget] = {}  # by pipeline name
        self.batching: dict[str, bool] = {}
        self._build_targets(metrics)

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
    ) -> ScoreResult:
        """Validate + features -> model (graph target, maybe batched, or in-process) -> rules.
        `trace` receives the graph batch's id and size (also when the call fails)."""
        deadline = deadline or Deadline(self.settings.request_timeout)
        start = time.perf_counter()
        prepared = pipeline.prepare(data)
        mark = time.perf_counter()
        timings["preprocess"] = mark - start
        if pipeline.graph_backed:
            assert pipeline.spec.graph is not None
            outputs = self.targets[pipeline.name].predict(
                pipeline.spec.graph,
                pipeline.name,
                prepared.features,
                prepared.rows,
                deadline=deadline,
                request_id=request_id,
                batching=self.batching[pipeline.name],
                trace=trace,
            )
            timings["graph"] = time.perf_counter() - mark
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
        each graph signature read once. Never calls the graph or waits on a lock."""
        reasons: dict[str, str] = {}
        for name in self.pipelines:
            target = self.targets.get(name)
            if target is None or target.signatures.ever_read:
                reasons[name] = "ready"
            else:
                target.ensure_reader()
                error = target.signatures.last_error or "not tried yet"
                reasons[name] = f"graph signature of {target.label} not read yet ({error})"
        targets = {target.label: target.status() for target in self.unique_targets()}
        return Readiness(all(v == "ready" for v in reasons.values()), reasons, targets)

    def describe(self, pipeline: Pipeline) -> dict[str, Any]:
        """GET /pipelines' entry: the pipeline's contract plus what its target knows."""
        info = pipeline.describe()
        target = self.targets.get(pipeline.name)
        if target is not None:
            signature = target.signatures.value
            info["model"]["signature_read"] = signature is not None
            info["model"]["batching"] = self.batching[pipeline.name]
            if signature is not None:
                info["model"]["inputs"] = {
                    name: {"dtype": str(t.dtype), "shape": t.shape}
                    for name, t in signature.inputs.items()
                }
        return info

    def unique_targets(self) -> list[RemoteTarget]:
        return list({id(t): t for t in self.targets.values()}.values())

    def _build_targets(self, metrics: Metrics | None) -> None:
        """One RemoteTarget per servable; its batch limits are the strictest of its pipelines'."""
        settings = self.settings
        by_key: dict[TargetKey, list[Pipeline]] = {}
        for pipeline in self.pipelines.values():
            spec = pipeline.spec
            if spec.graph is None:
                continue
            assert self.client is not None
            by_key.setdefault(TargetKey.of(self.client.base_url, spec.graph), []).append(pipeline)
            self.batching[pipeline.name] = (
                settings.batching if spec.batching is None else spec.batching
            )
        for key, members in by_key.items():
            rows = [p.spec.max_batch_rows or settings.max_batch_rows for p in members]
            waits = [
                settings.max_batch_wait_ms
                if p.spec.max_batch_wait_ms is None
                else p.spec.max_batch_wait_ms
                for p in members
            ]
            assert self.client is not None
            target = RemoteTarget(
                key,
                self.client,
                breaker_failures=settings.breaker_failures,
                breaker_reset=settings.breaker_reset_seconds,
                slots=settings.graph_concurrency,
                policy=BatchPolicy(max_rows=min(rows), max_wait=min(waits) / 1000.0),
                on_breaker_change=metrics.set_breaker_state if metrics else None,
                observe_batch=(
                    lambda rows, waits, label=key.label: metrics.observe_batch(label, rows, waits)
                )
                if metrics
                else None,
                count_call=metrics.count_graph_call if metrics else None,
                overdue=settings.overdue_rule,
                count_breaker_event=metrics.count_breaker_event if metrics else None,
            )
            if metrics is not None:
                metrics.set_breaker_state(key.label, 0)
            for pipeline in members:
                self.targets[pipeline.name] = target


def _only(pipelines: dict[str, Pipeline]) -> str | None:
    return next(iter(pipelines)) if len(pipelines) == 1 else None
