"""Shadow scoring: the same features also scored by another version, off the caller's path.

The caller's thread only decides (sampling) and enqueues; it never waits for the shadow and
never sees its errors. Per pipeline at most `shadow_queue` jobs wait or run in a worker
process; past that a job is dropped and counted. A few threads per process send the jobs
through the shadow's own `RemoteTarget` (its own breaker and batcher), each under its own
deadline (`shadow_timeout`), then compare the two answers value by value.
"""

from __future__ import annotations

import logging
import os
import queue
import random
import threading
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from logic_service.deadline import Deadline
from logic_service.errors import GraphTimeoutError, GraphUnavailableError, LogicError

if TYPE_CHECKING:
    from logic_service.config import GraphTarget
    from logic_service.graph.target import RemoteTarget
    from logic_service.traffic.metrics import PairRecorder

log = logging.getLogger(__name__)

# Threads per worker process sending shadow calls (they wait on the graph, not on the CPU).
SHADOW_THREADS = 4
# A job's deadline is shadow_timeout plus this: the call itself then gets all of
# shadow_timeout, and a call that runs out of it counts against the shadow's breaker.
DEADLINE_SLACK = 0.05


@dataclass(frozen=True, eq=False)
class ShadowPlan:
    """A pipeline's shadow version and how it is compared."""

    pipeline: str
    name: str  # the shadow's label or version number
    spec: GraphTarget  # timeout = shadow_timeout
    target: RemoteTarget  # the shadow's own (own breaker, own batcher)
    sample: float
    threshold: float | None
    timeout: float
    queue_limit: int
    batching: bool


@dataclass(frozen=True, eq=False)
class ShadowPair:
    """A shadow plan as seen from one primary lane: the pair the metrics are labelled with."""

    plan: ShadowPlan
    primary: str
    record: PairRecorder

    def sampled(self) -> bool:
        sample = self.plan.sample
        return sample >= 1.0 or random.random() < sample


@dataclass(frozen=True, eq=False)
class ShadowJob:
    pair: ShadowPair
    features: Any
    rows: int
    primary: Any  # the primary's outputs, copied
    request_id: str


class IncomparableError(ValueError):
    """The two answers do not have the same outputs and shapes."""


def compare(
    primary: Any, shadow: Any, threshold: float | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """|primary - shadow| per numeric output value, and per value whether both sides of
    `threshold` agree (None without a threshold). Non-finite differences are left out."""
    if isinstance(primary, dict) != isinstance(shadow, dict):
        raise IncomparableError("one answer has named outputs, the other does not")
    if isinstance(primary, dict):
        if sorted(primary) != sorted(shadow):
            raise IncomparableError(
                f"outputs differ: {sorted(primary)} (primary) vs {sorted(shadow)} (shadow)"
            )
        pairs = [(np.asarray(primary[k]), np.asarray(shadow[k])) for k in sorted(primary)]
    else:
        pairs = [(np.asarray(primary), np.asarray(shadow))]
    diffs, agreements = [], []
    for left, right in pairs:
        if left.shape != right.shape:
            raise IncomparableError(f"shapes differ: {left.shape} (primary) vs {right.shape}")
        if left.dtype.kind not in "iuf" or right.dtype.kind not in "iuf":
            continue  # strings, bytes: nothing to subtract
        a, b = left.astype(np.float64).ravel(), right.astype(np.float64).ravel()
        diff = np.abs(a - b)
        finite = np.isfinite(diff)
        diffs.append(diff[finite])
        if threshold is not None:
            agreements.append(((a >= threshold) == (b >= threshold))[finite])
    if not diffs:
        raise IncomparableError("no numeric output to compare")
    agreement = np.concatenate(agreements) if threshold is not None else None
    return np.concatenate(diffs), agreement


def copy_outputs(outputs: Any) -> Any:
    """The primary's outputs as they left the graph (a postprocess hook may change them)."""
    if isinstance(outputs, dict):
        return {key: np.array(value, copy=True) for key, value in outputs.items()}
    return np.array(outputs, copy=True)


class ShadowRunner:
    """A worker process's shadow queue and threads (started in the process that submits)."""

    def __init__(self, threads: int = SHADOW_THREADS) -> None:
        self.threads = threads
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._jobs: queue.SimpleQueue[ShadowJob] = queue.SimpleQueue()
        self._pending: dict[str, int] = defaultdict(int)  # by pipeline: queued or running
        self._logged: set[tuple[str, str]] = set()

    def submit(
        self, pair: ShadowPair, features: Any, rows: int, outputs: Any, request_id: str
    ) -> None:
        """Enqueue one comparison, or count it dropped; never blocks, never raises."""
        pipeline = pair.plan.pipeline
        with self._lock:
            self._start_threads()
            if self._pending[pipeline] >= pair.plan.queue_limit:
                dropped = True
            else:
                dropped = False
                self._pending[pipeline] += 1
        if dropped:
            pair.record.outcome("dropped")
            return
        self._jobs.put(ShadowJob(pair, features, rows, copy_outputs(outputs), request_id))

    def _start_threads(self) -> None:
        """Threads do not survive gunicorn's fork: each process starts its own (lock held)."""
        pid = os.getpid()
        if self._pid == pid:
            return
        self._pid = pid
        self._jobs = queue.SimpleQueue()
        self._pending = defaultdict(int)
        for number in range(self.threads):
            threading.Thread(target=self._work, name=f"shadow-{number}", daemon=True).start()

    def _work(self) -> None:
        jobs = self._jobs
        while True:
            job = jobs.get()
            try:
                self._run(job)
            except Exception:  # a bug here must not end the thread
                log.exception(
                    "shadow job for pipeline %s failed unexpectedly", job.pair.plan.pipeline
                )
            finally:
                with self._lock:
                    self._pending[job.pair.plan.pipeline] -= 1

    def _run(self, job: ShadowJob) -> None:
        pair, plan = job.pair, job.pair.plan
        try:
            outputs = plan.target.predict(
                plan.spec,
                plan.pipeline,
                job.features,
                job.rows,
                deadline=Deadline(plan.timeout + DEADLINE_SLACK),
                request_id=job.request_id,
                batching=plan.batching,
            )
        except GraphTimeoutError:
            pair.record.outcome("timeout")
            return
        except GraphUnavailableError:
            pair.record.outcome("unavailable")
            return
        except LogicError as error:
            pair.record.outcome("error")
            self._log_once(plan, "error", f"shadow {plan.name} failed: {error}")
            return
        try:
            diffs, agreement = compare(job.primary, outputs, plan.threshold)
        except IncomparableError as error:
            pair.record.outcome("error")
            self._log_once(plan, "incomparable", f"cannot compare with shadow {plan.name}: {error}")
            return
        pair.record.compared(diffs, agreement)
        pair.record.outcome("ok")

    def _log_once(self, plan: ShadowPlan, kind: str, message: str) -> None:
        """One line per pipeline and kind of failure per process: a failing shadow is
        counted in logic_shadow_jobs_total, not logged per request."""
        key = (plan.pipeline, kind)
        if key in self._logged:
            return
        self._logged.add(key)
        log.warning(
            "pipeline %s: %s (counted in logic_shadow_jobs_total; logged once per worker)",
            plan.pipeline,
            message,
        )
