"""Prometheus metrics: request counts by pipeline and status, latency split by stage.

Each app owns its registry (no module globals, several apps per test process are fine).
Under gunicorn, PROMETHEUS_MULTIPROC_DIR is set before prometheus_client is imported
(gunicorn.conf.py does it), every worker writes its own files, and /metrics aggregates them.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Tight at the low end: the tier's own overhead is a few milliseconds.
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
STAGES = ("preprocess", "graph", "model", "postprocess", "total")
ENGINES = ("onnx", "sklearn")
_BATCH_ROWS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
_QUEUE_WAIT = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0)


class Metrics:
    """The counters and histograms one app records into."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "logic_requests",
            "Scoring requests by pipeline and HTTP status.",
            ["pipeline", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "logic_request_seconds",
            "Time spent per scoring request, by pipeline and stage "
            "(preprocess, graph call, in-process model, postprocess, total).",
            ["pipeline", "stage"],
            buckets=_BUCKETS,
            registry=self.registry,
        )

        self.engine = Gauge(
            "logic_pipeline_engine",
            "1 for the engine computing a pipeline's features (onnx: compiled, parity passed).",
            ["pipeline", "engine"],
            multiprocess_mode="max",  # set once in the master at start-up
            registry=self.registry,
        )
        self.unknown_values = Counter(
            "logic_unknown_values",
            "Values no encoder was fitted on, scored as the encoder scores unknowns.",
            ["pipeline", "column"],
            registry=self.registry,
        )
        # Label children, looked up once: the lookup costs more than the observation.
        self._counters: dict[tuple[str, int], Any] = {}
        self._stages: dict[tuple[str, str], Any] = {}
        self._batch: dict[str, tuple[Any, Any]] = {}
        self._calls: dict[tuple[str, str], Any] = {}
        # Graph targets (graph_target.py): batching, call outcomes, breaker state.
        self.batch_rows = Histogram(
            "logic_batch_rows",
            "Rows per :predict call sent to a graph target (several requests when batched).",
            ["target"],
            buckets=_BATCH_ROWS,
            registry=self.registry,
        )
        self.batch_queue_wait = Histogram(
            "logic_batch_queue_wait_seconds",
            "Time a request waited in its graph target's queue before its batch was sent.",
            ["target"],
            buckets=_QUEUE_WAIT,
            registry=self.registry,
        )
        self.graph_calls = Counter(
            "logic_graph_calls",
            "Calls to the graph tier by target and outcome (ok, error, timeout, unreachable).",
            ["target", "outcome"],
            registry=self.registry,
        )
        self.breaker_events = Counter(
            "logic_graph_breaker_events",
            "Breaker openings and probes per graph target: opened_overdue (a call in flight "
            "past its overdue limit), opened_failures (failures in a row), probe_answered, "
            "probe_timeout, probe_unreachable.",
            ["target", "event"],
            registry=self.registry,
        )
        self.breaker_state = Gauge(
            "logic_graph_breaker_state",
            "Circuit breaker per graph target: 0 closed, 1 half-open, 2 open (worst worker).",
            ["target"],
            multiprocess_mode="livemax",
            registry=self.registry,
        )

    def watch(self, pipeline: Any) -> None:
        """Publish a pipeline's engine and count the unknown categories it reports."""
        for engine in ENGINES:
            self.engine.labels(pipeline.name, engine).set(int(engine == pipeline.engine))
        counter = self.unknown_values

        def count(column: str, values: int) -> None:
            counter.labels(pipeline.name, column).inc(values)

        pipeline.on_unknown = count

    def observe_batch(self, target: str, rows: int, waits: list[float]) -> None:
        children = self._batch.get(target)
        if children is None:
            children = self._batch[target] = (
                self.batch_rows.labels(target),
                self.batch_queue_wait.labels(target),
            )
        children[0].observe(rows)
        for seconds in waits:
            children[1].observe(seconds)

    def count_graph_call(self, target: str, outcome: str) -> None:
        key = (target, outcome)
        child = self._calls.get(key)
        if child is None:
            child = self._calls[key] = self.graph_calls.labels(target, outcome)
        child.inc()

    def count_breaker_event(self, target: str, event: str) -> None:
        self.breaker_events.labels(target, event).inc()

    def set_breaker_state(self, target: str, state: int) -> None:
        self.breaker_state.labels(target).set(state)

    def observe(self, pipeline: str, status: int, timings: dict[str, float]) -> None:
        """Count one request and record each stage that ran."""
        key = (pipeline, status)
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = self.requests.labels(pipeline, str(status))
        counter.inc()
        for stage, seconds in timings.items():
            child = self._stages.get((pipeline, stage))
            if child is None:
                if stage not in STAGES:
                    continue
                child = self._stages[(pipeline, stage)] = self.latency.labels(pipeline, stage)
            child.observe(seconds)

    def exposition(self) -> tuple[bytes, str]:
        """The text format: aggregated over workers in multiprocess mode, else this process."""
        return generate_latest(collected(self.registry)), CONTENT_TYPE_LATEST


def collected(registry: CollectorRegistry) -> CollectorRegistry:
    """What to read samples from: under gunicorn (multiprocess mode) a registry collecting
    every worker's files, else `registry`, this process's own."""
    if os.environ.get(MULTIPROC_ENV):
        aggregated = CollectorRegistry()
        multiprocess.MultiProcessCollector(aggregated)
        return aggregated
    return registry
