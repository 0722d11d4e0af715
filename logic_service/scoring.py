"""The request path of POST /get_score, readable top to bottom in `Scorer.score`.

Holds the loaded pipelines and the graph client for one process; no file I/O and no
schema discovery per request (the graph signature is read once and cached).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from logic_service.codecs import Signature, decode_predict_response, encode_predict_request
from logic_service.errors import (
    BadRequestError,
    GraphRejectedError,
    GraphUnavailableError,
    LogicError,
    UnknownPipelineError,
)
from logic_service.graph_client import GraphClient
from logic_service.pipelines import Pipeline


@dataclass
class ScoreResult:
    """What one scoring call produced (stage timings go into the caller's `timings` dict)."""

    data: Any
    rows: int


@dataclass
class Readiness:
    """Per graph-backed pipeline: ready or the reason it is not."""

    ready: bool
    reasons: dict[str, str]


class Scorer:
    """Pipelines + graph client: the service's data plane."""

    def __init__(
        self,
        pipelines: dict[str, Pipeline],
        client: GraphClient | None,
        default: str | None,
    ) -> None:
        self.pipelines = pipelines
        self.client = client
        self.default = default if default is not None else _only(pipelines)

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
        self, pipeline: Pipeline, data: Any, request_id: str, timings: dict[str, float]
    ) -> ScoreResult:
        """Validate -> features -> model (graph or in-process) -> postprocess."""
        start = time.perf_counter()
        prepared = pipeline.prepare(data)
        features = prepared.features
        mark = time.perf_counter()
        timings["preprocess"] = mark - start
        if pipeline.graph_backed:
            outputs = self._call_graph(pipeline, features, request_id)
            timings["graph"] = time.perf_counter() - mark
        else:
            outputs = pipeline.predict_local(features)
            timings["model"] = time.perf_counter() - mark
        mark = time.perf_counter()
        data = pipeline.postprocess(outputs, prepared)
        timings["postprocess"] = time.perf_counter() - mark
        return ScoreResult(data, prepared.rows)

    def _call_graph(self, pipeline: Pipeline, features: Any, request_id: str) -> Any:
        target = pipeline.spec.graph
        assert target is not None and self.client is not None
        client = self.client

        def predict(signature: Signature) -> bytes:
            inputs = pipeline.graph_inputs(features, signature)
            body = encode_predict_request(target.signature_name, inputs)
            return client.predict(target, body, request_id=request_id, read_timeout=target.timeout)

        def fetch() -> Signature:
            return client.signature(target, request_id=request_id)

        signature = pipeline.ensure_signature(fetch)
        try:
            raw = predict(signature)
        except GraphRejectedError:
            # The graph tier may have rolled out a version with another signature (renamed
            # input, new dtype): re-read it, and retry once if it did change.
            pipeline.forget_signature()
            fresh = pipeline.ensure_signature(fetch)
            if fresh == signature:
                raise
            raw = predict(fresh)
        return decode_predict_response(raw, target.output)

    def load_signatures(self) -> dict[str, str]:
        """Read every graph signature now (start-up); failures are left for /ready to report."""
        problems = {}
        for pipeline in self.pipelines.values():
            if pipeline.graph_backed:
                try:
                    self._signature(pipeline)
                except LogicError as error:
                    problems[pipeline.name] = str(error)
        return problems

    def readiness(self) -> Readiness:
        """Every graph-backed model AVAILABLE and its metadata read."""
        reasons: dict[str, str] = {}
        for pipeline in self.pipelines.values():
            if not pipeline.graph_backed:
                continue
            assert self.client is not None and pipeline.spec.graph is not None
            ok, reason = self.client.available(pipeline.spec.graph)
            if ok:
                try:
                    self._signature(pipeline)
                except LogicError as error:
                    ok, reason = False, f"metadata not readable: {error}"
            reasons[pipeline.name] = "ready" if ok else reason
        return Readiness(all(value == "ready" for value in reasons.values()), reasons)

    def _signature(self, pipeline: Pipeline) -> Any:
        target = pipeline.spec.graph
        client = self.client
        if client is None or target is None:
            raise GraphUnavailableError("no graph tier configured")
        return pipeline.ensure_signature(lambda: client.signature(target))


def _only(pipelines: dict[str, Pipeline]) -> str | None:
    return next(iter(pipelines)) if len(pipelines) == 1 else None
