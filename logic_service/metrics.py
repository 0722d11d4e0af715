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

    def watch(self, pipeline: Any) -> None:
        """Publish a pipeline's engine and count the unknown categories it reports."""
        for engine in ENGINES:
            self.engine.labels(pipeline.name, engine).set(int(engine == pipeline.engine))
        counter = self.unknown_values

        def count(column: str, values: int) -> None:
            counter.labels(pipeline.name, column).inc(values)

        pipeline.on_unknown = count

    def observe(self, pipeline: str, status: int, timings: dict[str, float]) -> None:
        """Count one request and record each stage that ran."""
        self.requests.labels(pipeline, str(status)).inc()
        for stage, seconds in timings.items():
            if stage in STAGES:
                self.latency.labels(pipeline, stage).observe(seconds)

    def exposition(self) -> tuple[bytes, str]:
        """The text format: aggregated over workers in multiprocess mode, else this process."""
        if os.environ.get(MULTIPROC_ENV):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
