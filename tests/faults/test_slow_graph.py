"""A graph tier that answers slowly: 504 at the deadline, in-process pipelines unaffected.

The graph tier is the suite's TinyGraphTier (a real HTTP server speaking TF Serving REST)
whose `slow` model answers after a delay the test sets. A sleep, not a spinning model: the
delay costs no CPU, so the figures do not depend on how busy this shared machine is.
"""

from __future__ import annotations

import re
import statistics
import time

import pytest
import requests

from devtools.logic_tier import TinyGraphTier
from tests.faults.conftest import FULL, Load, record, start_logic, statuses

pytestmark = pytest.mark.fault

DEADLINE = 1.0
GRAPH_DELAY = 3.0
SLOW_CLIENTS = 6
LOCAL_CLIENTS = 2
THREADS = SLOW_CLIENTS + LOCAL_CLIENTS


def test_slow_graph_is_504_at_the_deadline_and_in_process_pipelines_keep_their_pace(
    fault_bed, tmp_path
) -> None:
    tier = TinyGraphTier(fault_bed.width, delay=GRAPH_DELAY).start()
    config = fault_bed.artifacts.write_config(
        "faults_deadline.yaml",
        {
            "pipelines": {
                "slow": {
                    "transformer": "credit/transformer.pkl",
                    "graph_model": "slow",
                    "timeout": DEADLINE,
                },
                "local": {"transformer": "credit/transformer.pkl", "model": "credit/sk_model.pkl"},
            }
        },
    )
    logic = start_logic(
        fault_bed,
        tier.url,
        tmp_path / "logic.log",
        config=config,
        env={"LOGIC_REQUEST_TIMEOUT": str(DEADLINE)},
        workers=1,
        threads=THREADS,
    )
    records = fault_bed.records(2)
    try:
        slow = Load(logic.url, SLOW_CLIENTS, lambda _c, _s: {"model": "slow", "data": records})
        local = Load(logic.url, LOCAL_CLIENTS, lambda _c, _s: {"model": "local", "data": records})
        with slow, local:
            time.sleep(6)
        assert logic.alive()
    finally:
        logic.stop()
        tier.stop()
    slow_outcomes, local_outcomes = slow.outcomes, local.outcomes
    slow_seconds = sorted(o.seconds for o in slow_outcomes)
    local_seconds = sorted(o.seconds for o in local_outcomes)
    record(
        f"graph answering in {GRAPH_DELAY:.0f} s, deadline {DEADLINE:.0f} s",
        slow_requests=len(slow_outcomes),
        slow_statuses=statuses(slow_outcomes),
        slow_min_max_s=f"{slow_seconds[0]:.2f}-{slow_seconds[-1]:.2f}",
        in_process_requests=len(local_outcomes),
        in_process_statuses=statuses(local_outcomes),
        in_process_max_ms=round(local_seconds[-1] * 1000, 1),
    )
    assert slow_outcomes and all(o.status == 504 and o.json_ok for o in slow_outcomes), statuses(
        slow_outcomes
    )
    # At the deadline: not before it, and well before the graph's own answer.
    assert slow_seconds[0] >= DEADLINE * 0.95
    assert slow_seconds[-1] < DEADLINE + 1.0 < GRAPH_DELAY
    assert local_outcomes and all(o.status == 200 for o in local_outcomes), statuses(local_outcomes)
    assert local_seconds[-1] < DEADLINE, "an in-process request waited behind graph calls"


STEADY_DELAY = 0.3
STEADY_CLIENTS = 16
# Long enough that each worker's rule judges (20 answered calls, about 7 s at 3 calls/s) for
# most of the run; FAULT_FULL keeps the load on for a minute.
STEADY_SECONDS = 60.0 if FULL else 20.0


def test_a_steady_300_ms_model_under_16_clients_never_opens_the_breaker(
    fault_bed, tmp_path
) -> None:
    """The overdue rule (logic_service/graph/overdue.py) with its defaults: a model that always
    takes 300 ms is overdue only after 10 x its p99, about 3 s; its calls never get there.
    Budgets are the service defaults (10 s) so every request can be answered: the test is
    about the breaker, not about deadlines."""
    tier = TinyGraphTier(fault_bed.width, delay=STEADY_DELAY).start()
    config = fault_bed.artifacts.write_config(
        "faults_steady.yaml",
        {"pipelines": {"slow": {"transformer": "credit/transformer.pkl", "graph_model": "slow"}}},
    )
    logic = start_logic(
        fault_bed,
        tier.url,
        tmp_path / "logic.log",
        config=config,
        env={"LOGIC_REQUEST_TIMEOUT": "10", "LOGIC_GRAPH_READ_TIMEOUT": "10"},
    )
    records = fault_bed.records(2)
    limits: list[float] = []
    load = Load(logic.url, STEADY_CLIENTS, lambda _c, _s: {"model": "slow", "data": records})
    try:
        with load:
            # The rule judges only after 20 answered calls per worker: on a slow box that takes
            # longer, so the steady phase is counted from the first verdict (bounded).
            started = time.monotonic()
            judged_from = None
            while time.monotonic() - started < 4 * STEADY_SECONDS:
                time.sleep(1)
                ready = requests.get(logic.url + "/ready", timeout=10).json()
                limit = ready["data"]["graph"]["slow"]["calls"]["overdue_after_seconds"]
                if limit is not None:
                    limits.append(limit)
                    judged_from = judged_from or time.monotonic()
                judged = judged_from is not None and time.monotonic() - judged_from
                if judged and judged >= STEADY_SECONDS and len(limits) >= STEADY_SECONDS / 2:
                    break
            observed = time.monotonic() - started
        metrics = requests.get(logic.url + "/metrics", timeout=10).text
        assert logic.alive()
    finally:
        logic.stop()
        tier.stop()
    seconds = sorted(o.seconds for o in load.outcomes)
    opened = re.findall(
        r'^logic_graph_breaker_events_total\{[^}]*event="opened_\w+"[^}]*\} (\S+)$', metrics, re.M
    )
    states = re.findall(r"^logic_graph_breaker_state\{[^}]*\} (\S+)$", metrics, re.M)
    record(
        f"graph answering in {STEADY_DELAY * 1000:.0f} ms, steady, {STEADY_CLIENTS} clients",
        seconds=round(observed, 1),
        requests=len(load.outcomes),
        statuses=statuses(load.outcomes),
        graph_calls=tier.predict_calls,
        request_p50_ms=round(statistics.median(seconds) * 1000),
        request_max_ms=round(seconds[-1] * 1000),
        overdue_after_s=f"{min(limits):.2f}-{max(limits):.2f}" if limits else None,
        breaker_openings=sum(float(value) for value in opened),
    )
    assert load.outcomes and all(o.status == 200 for o in load.outcomes), statuses(load.outcomes)
    assert not opened or all(float(value) == 0 for value in opened), opened
    assert states and all(float(value) == 0 for value in states), states
    # Judged for most of the run, and judged as slow: the limit is its p99 x 10, not the floor.
    assert len(limits) >= STEADY_SECONDS / 2 and min(limits) >= 10 * STEADY_DELAY * 0.95, limits
