"""A graph tier that answers slowly: 504 at the deadline, in-process pipelines unaffected.

The graph tier is the suite's TinyGraphTier (a real HTTP server speaking TF Serving REST)
whose `slow` model answers after a delay the test sets. A sleep, not a spinning model: the
delay costs no CPU, so the figures do not depend on how busy this shared machine is.
"""

from __future__ import annotations

import time

import pytest

from devtools.logic_tier import TinyGraphTier
from tests.faults.conftest import Load, record, start_logic, statuses

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
