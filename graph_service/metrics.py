"""Prometheus text for GET /monitoring/prometheus/metrics, with TF Serving's metric names.

TF Serving exports `/tensorflow/serving/request_count{model_name,status}` and
`/tensorflow/serving/request_latency{model_name,API,entrypoint}` (microseconds) and its
Prometheus exporter writes the `/` as `:`; we keep those names so TF Serving dashboards work
on the stand-in, plus our own `graph_*` series (config reload errors, calls in flight).
Hand-written exposition (a few counters under one lock): the graph tier's dependencies stay
what they are, and recording a request costs a dict update.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable

# TF Serving's request_latency buckets: exponential, 10 us * 1.8^i, 33 buckets.
LATENCY_BUCKETS_US = [10 * 1.8**i for i in range(33)]

REQUEST_COUNT = ":tensorflow:serving:request_count"
REQUEST_LATENCY = ":tensorflow:serving:request_latency"
RUNTIME_LATENCY = ":tensorflow:serving:runtime_latency"
RELOAD_ERRORS = "graph_config_reload_errors_total"
INFLIGHT = "graph_model_inflight_calls"


class _Histogram:
    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS_US) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(LATENCY_BUCKETS_US, value)] += 1
        self.sum += value


class Metrics:
    """Request counters and latency histograms; gauges are read from callbacks at scrape time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str], int] = {}
        self._latency: dict[tuple[str, str, str], _Histogram] = {}
        self._runtime: dict[tuple[str, str], _Histogram] = {}
        self._reload_errors: Callable[[], dict[str, int]] = dict
        self._inflight: Callable[[], dict[str, int]] = dict

    def bind(
        self,
        reload_errors: Callable[[], dict[str, int]],
        inflight: Callable[[], dict[str, int]],
    ) -> None:
        """Where scrape-time values come from (the watcher's error counts, the pools)."""
        self._reload_errors = reload_errors
        self._inflight = inflight

    def record_request(
        self, model: str, api: str, status: str, seconds: float, entrypoint: str = "REST"
    ) -> None:
        with self._lock:
            key = (model, status)
            self._requests[key] = self._requests.get(key, 0) + 1
            hist = self._latency.get((model, api, entrypoint))
            if hist is None:
                hist = self._latency[(model, api, entrypoint)] = _Histogram()
            hist.observe(seconds * 1e6)

    def record_runtime(self, model: str, api: str, seconds: float) -> None:
        with self._lock:
            hist = self._runtime.get((model, api))
            if hist is None:
                hist = self._runtime[(model, api)] = _Histogram()
            hist.observe(seconds * 1e6)

    def render(self) -> bytes:
        """The Prometheus text exposition (version 0.0.4)."""
        with self._lock:
            requests = dict(self._requests)
            latency = {k: (list(h.counts), h.sum) for k, h in self._latency.items()}
            runtime = {k: (list(h.counts), h.sum) for k, h in self._runtime.items()}
        lines = [
            f"# HELP {REQUEST_COUNT} The total number of requests.",
            f"# TYPE {REQUEST_COUNT} counter",
        ]
        for (model, status), count in sorted(requests.items()):
            lines.append(f"{REQUEST_COUNT}{_labels(model_name=model, status=status)} {count}")
        lines += [
            f"# HELP {REQUEST_LATENCY} Distribution of wall time (in microseconds) for Tensorflow Serving request.",
            f"# TYPE {REQUEST_LATENCY} histogram",
        ]
        for (model, api, entry), (counts, total) in sorted(latency.items()):
            lines += _histogram(
                REQUEST_LATENCY,
                {"model_name": model, "API": api, "entrypoint": entry},
                counts,
                total,
            )
        lines += [
            f"# HELP {RUNTIME_LATENCY} Distribution of wall time (in microseconds) for Tensorflow runtime.",
            f"# TYPE {RUNTIME_LATENCY} histogram",
        ]
        for (model, api), (counts, total) in sorted(runtime.items()):
            labels = {"model_name": model, "API": api, "runtime": "TF1"}
            lines += _histogram(RUNTIME_LATENCY, labels, counts, total)
        lines += [
            f"# HELP {RELOAD_ERRORS} models.config reads or model syncs that failed (the previous state kept serving).",
            f"# TYPE {RELOAD_ERRORS} counter",
        ]
        errors = self._reload_errors()
        for stage in sorted({"read", "sync", *errors}):
            lines.append(f"{RELOAD_ERRORS}{_labels(stage=stage)} {errors.get(stage, 0)}")
        lines += [
            f"# HELP {INFLIGHT} Model calls running now, per model (bounded per model).",
            f"# TYPE {INFLIGHT} gauge",
        ]
        for model, count in sorted(self._inflight().items()):
            lines.append(f"{INFLIGHT}{_labels(model_name=model)} {count}")
        return ("\n".join(lines) + "\n").encode()


def _histogram(name: str, labels: dict[str, str], counts: list[int], total: float) -> list[str]:
    out, running = [], 0
    for bound, count in zip([*LATENCY_BUCKETS_US, float("inf")], counts, strict=True):
        running += count
        le = "+Inf" if bound == float("inf") else f"{bound:g}"
        out.append(f"{name}_bucket{_labels(**labels, le=le)} {running}")
    out.append(f"{name}_sum{_labels(**labels)} {total:g}")
    out.append(f"{name}_count{_labels(**labels)} {running}")
    return out


def _labels(**labels: str) -> str:
    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return "{" + ",".join(f'{k}="{escape(str(v))}"' for k, v in labels.items()) + "}"
