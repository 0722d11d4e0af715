"""A frozen (SIGSTOP) or dead shadow changes no caller's answer and no caller's p99.

The shadow version is served by a graph-service of its own (`shadow_graph_url`), so it can be
frozen and killed while the primary's graph keeps serving: three phases of the same load,
shadow healthy, frozen, dead. A shadow on the caller's path would add its 1 s deadline to the
callers' latency in the frozen phase and its errors to their answers in the dead one.
"""

from __future__ import annotations

import signal
import statistics
import time
from pathlib import Path

import pytest

from devtools.savedmodels import start_graph_service
from devtools.traffic import TrafficBed, metric, scores, start_traffic_logic
from tests.faults.conftest import (
    FAST_FAILURE_ENV,
    Load,
    Outcome,
    kill_tree,
    record,
    signal_tree,
    statuses,
)

pytestmark = pytest.mark.fault

CLIENTS = 8
PHASE_SECONDS = 6.0
SHADOW_TIMEOUT = 1.0


def _p(outcomes: list[Outcome], q: float) -> float:
    seconds = sorted(o.seconds for o in outcomes)
    return seconds[min(len(seconds) - 1, int(q * len(seconds)))]


def _jobs(url: str, outcome: str) -> float:
    return metric(url, "logic_shadow_jobs_total", outcome=outcome)


def _settle(url: str) -> None:
    """Wait until no shadow job is finishing (the counters stay still for 0.3 s)."""
    last, deadline = -1.0, time.monotonic() + 10
    while (now := metric(url, "logic_shadow_jobs_total")) != last and time.monotonic() < deadline:
        last = now
        time.sleep(0.3)


def test_a_frozen_then_dead_shadow_changes_no_answer_and_no_p99(
    traffic_bed: TrafficBed, tmp_path: Path
) -> None:
    primary = start_graph_service(traffic_bed.models_config, tmp_path)
    shadow = start_graph_service(traffic_bed.models_config, tmp_path)
    logic = None
    records = traffic_bed.records(2, seed=12)
    expected = traffic_bed.expected(records, 1)
    phases: dict[str, list[Outcome]] = {}
    jobs: dict[str, dict[str, float]] = {}
    try:
        (tmp_path / "logic").mkdir()
        logic = start_traffic_logic(
            traffic_bed,
            primary.url,
            tmp_path / "logic",
            {
                "shadow": "canary",
                "shadow_graph_url": shadow.url,
                "shadow_timeout": SHADOW_TIMEOUT,
                "shadow_threshold": 0.5,
            },
            version_label="stable",
            env=FAST_FAILURE_ENV,
        )

        def run(phase: str) -> None:
            _settle(logic.url)  # jobs of the phase before are not counted in this one
            before = {o: _jobs(logic.url, o) for o in ("ok", "timeout", "unavailable", "dropped")}
            with Load(logic.url, CLIENTS, lambda _c, _s: {"data": records}) as load:
                time.sleep(PHASE_SECONDS)
            phases[phase] = load.outcomes
            jobs[phase] = {o: _jobs(logic.url, o) - n for o, n in before.items()}

        run("healthy")
        signal_tree(shadow, signal.SIGSTOP)
        run("frozen")
        signal_tree(shadow, signal.SIGCONT)
        kill_tree(shadow)
        run("dead")
        assert logic.alive() and primary.alive()
        log_lines = logic.log().splitlines()
    finally:
        if logic is not None:
            logic.stop()
        if shadow.alive():
            signal_tree(shadow, signal.SIGCONT)
            shadow.stop()
        primary.stop()

    figures = {}
    for phase, outcomes in phases.items():
        assert all(o.status == 200 for o in outcomes), (phase, statuses(outcomes))
        for outcome in outcomes:
            assert scores(outcome.body) == pytest.approx(expected, abs=1e-5), phase
        figures[phase] = {
            "requests": len(outcomes),
            "p50_ms": round(statistics.median(o.seconds for o in outcomes) * 1000, 1),
            "p99_ms": round(_p(outcomes, 0.99) * 1000, 1),
            "shadow_jobs": {k: int(v) for k, v in jobs[phase].items() if v},
        }
    record("shadow healthy, frozen (SIGSTOP), dead (SIGKILL)", **figures)
    # The shadow really was in each state: compared, then timing out or dropped, then refused.
    assert jobs["healthy"]["ok"] > 0
    assert jobs["frozen"]["timeout"] + jobs["frozen"]["dropped"] > 0
    assert jobs["frozen"]["ok"] == 0 and jobs["dead"]["ok"] == 0
    assert jobs["dead"]["unavailable"] > 0
    # The shadow's breaker, prober and batcher speak as the shadow: an operator reading
    # "graph credit@canary: breaker opened" would look for a broken primary lane.
    about_canary = [line for line in log_lines if "credit@canary" in line]
    assert any("(shadow)" in line and "breaker" in line for line in about_canary)
    assert [line for line in about_canary if "(shadow)" not in line] == []
    # Noise on this shared box swings a p99 by tens of ms; a shadow on the caller's path
    # would add SHADOW_TIMEOUT (1 s) to it.
    baseline = _p(phases["healthy"], 0.99)
    bound = max(2 * baseline, baseline + 0.1)
    for phase in ("frozen", "dead"):
        assert _p(phases[phase], 0.99) <= bound, figures
