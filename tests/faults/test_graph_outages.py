"""The graph tier dies or freezes under 16-client load; the logic tier stays up and honest.

Real graph-service (dense SavedModel) and real logic-service (gunicorn, 2 workers x 4 threads)
on free ports. SIGKILL of the whole graph process tree, then the same command on the same
port; SIGSTOP of the tree (what a GC pause, a stuck GPU or a saturated node looks like from
outside), then SIGCONT.
"""

from __future__ import annotations

import re
import signal
import statistics
import time

import pytest
import requests

from tests.faults.conftest import (
    Load,
    kill_tree,
    post,
    record,
    restart,
    signal_tree,
    start_logic,
    statuses,
)

pytestmark = pytest.mark.fault

CLIENTS = 16
RECOVERY_BOUND = 2.0
# A functional bound: a probe answered in milliseconds normally, never near the budget of
# the graph calls it shares the process with (2 s in this suite).
PROBE_BOUND = 1.0


def _body(fault_bed):
    records = fault_bed.records(3)
    return lambda _client, _sequence: {"data": records}


def _recovery(outcomes, since: float) -> float:
    """Seconds from `since` until the last answer that was not a 200 (0 if none)."""
    ends = [o.started + o.seconds for o in outcomes if o.status != 200 and o.started >= since]
    return max(0.0, max(ends, default=since) - since)


def test_graph_killed_under_load_only_json_503_then_all_200_within_2s_of_its_return(
    fault_bed, graph, tmp_path
) -> None:
    """Dead, and starting again: JSON 503 only. Ready again: all 200 within 2 s.

    graph-service opens its ports only once its models are loaded (as TF Serving does), so
    while it starts again a graph call is refused and the caller gets 503 at once, never a
    connection accepted and left to time out (504).
    """
    logic = start_logic(fault_bed, graph.url, tmp_path / "logic.log")
    restarted = None
    try:
        load = Load(logic.url, CLIENTS, _body(fault_bed)).start()
        time.sleep(2)
        killed_at = time.monotonic()
        kill_tree(graph)
        dead_at = time.monotonic()  # killed_at..dead_at: requests may still be answered
        time.sleep(3)
        spawned_at = time.monotonic()
        restarted = restart(graph, "/v1/models/credit")
        back_at = time.monotonic()
        time.sleep(2 * RECOVERY_BOUND + 1)
        outcomes = load.stop()
        assert logic.alive()
    finally:
        logic.stop()
        if restarted is not None:
            restarted.stop()

    before = [o for o in outcomes if o.started + o.seconds < killed_at]
    dead = [o for o in outcomes if dead_at <= o.started and o.started + o.seconds < spawned_at]
    failed = [o for o in outcomes if o.status != 200]
    late = [o for o in outcomes if o.started >= back_at + RECOVERY_BOUND]
    record(
        "graph SIGKILL under load, restarted",
        requests=len(outcomes),
        statuses=statuses(outcomes),
        while_dead=statuses(dead),
        dead_seconds=round(spawned_at - killed_at, 1),
        restart_seconds=round(back_at - spawned_at, 1),
        recovery_seconds=round(_recovery(outcomes, back_at), 2),
    )
    assert before and all(o.status == 200 for o in before), statuses(before)
    assert dead and all(o.status == 503 and o.json_ok for o in dead), [
        (o.status, o.body) for o in dead if o.status != 503 or not o.json_ok
    ][:5]
    # A call in flight when the graph dies has its connection reset under it: JSON 502 ("broke
    # off"); every request started after that gets 503, while dead and while starting again.
    in_flight = [o for o in failed if o.started < dead_at]
    assert all(o.status in (502, 503, 504) and o.json_ok for o in in_flight), in_flight[:5]
    assert all(o.status == 503 and o.json_ok for o in failed if o.started >= dead_at), [
        (o.status, o.body) for o in failed if o.started >= dead_at and o.status != 503
    ][:5]
    assert all(o.started + o.seconds >= killed_at for o in failed)
    assert late and all(o.status == 200 for o in late), statuses(late)


def test_graph_frozen_health_stays_fast_and_all_recovers_after_sigcont(
    fault_bed, graph, tmp_path
) -> None:
    logic = start_logic(fault_bed, graph.url, tmp_path / "logic.log")
    probes: list[tuple[float, int]] = []
    try:
        load = Load(logic.url, CLIENTS, _body(fault_bed)).start()
        time.sleep(1.5)
        signal_tree(graph, signal.SIGSTOP)
        frozen_at = time.monotonic()
        while time.monotonic() - frozen_at < 8:
            start = time.monotonic()
            try:
                status = requests.get(logic.url + "/health", timeout=10).status_code
            except requests.RequestException:
                status = 0
            probes.append((time.monotonic() - start, status))
            time.sleep(0.1)
        signal_tree(graph, signal.SIGCONT)
        thawed_at = time.monotonic()
        time.sleep(6)
        outcomes = load.stop()
        assert logic.alive() and graph.alive()
    finally:
        signal_tree(graph, signal.SIGCONT)
        logic.stop()

    seconds = sorted(s for s, _ in probes)
    # In flight at some point of the freeze (requests queued for a logic thread before it count:
    # their budget starts when a thread takes them).
    during = [o for o in outcomes if o.started < thawed_at and o.started + o.seconds > frozen_at]
    after = [o for o in outcomes if o.started >= thawed_at + 3]
    record(
        "graph SIGSTOP under load, SIGCONT after 8 s",
        requests=len(outcomes),
        statuses=statuses(outcomes),
        health_probes=len(probes),
        health_p50_ms=round(statistics.median(seconds) * 1000, 1),
        health_max_ms=round(seconds[-1] * 1000, 1),
        recovery_seconds=round(_recovery(outcomes, thawed_at), 2),
    )
    assert all(status == 200 for _, status in probes), probes
    assert seconds[-1] < PROBE_BOUND, f"slowest /health {seconds[-1]:.3f}s"
    failed = [o for o in outcomes if o.status != 200]
    assert all(o.status in (503, 504) and o.json_ok for o in failed), [
        (o.status, o.body) for o in failed if o.status not in (503, 504) or not o.json_ok
    ][:5]
    assert any(o.status != 200 for o in during), "the freeze was not noticed"
    assert after and all(o.status == 200 for o in after), statuses(after)


def test_get_score_fails_fast_once_the_breaker_opens(fault_bed, graph, tmp_path) -> None:
    """After LOGIC_BREAKER_FAILURES (5) graph calls in a row time out, /get_score answers 503 at
    once and /ready stays 200. The calls are tripped one request at a time: concurrent requests
    share batches, so eight of them may be only two or three graph calls. The reset is long
    here so that no half-open probe (which waits its full budget) lands in the fast phase."""
    logic = start_logic(
        fault_bed,
        graph.url,
        tmp_path / "logic.log",
        workers=1,
        env={"LOGIC_BREAKER_RESET_SECONDS": "60"},
    )
    body = _body(fault_bed)(0, 0)
    try:
        signal_tree(graph, signal.SIGSTOP)
        tripping = []
        while len(tripping) < 8 and not (tripping and tripping[-1].status == 503):
            tripping.append(post(requests, logic.url + "/get_score", body))
        assert all(o.status in (503, 504) and o.json_ok for o in tripping), tripping
        assert [o.status for o in tripping] == [504] * 5 + [503], statuses(tripping)
        fast = [post(requests, logic.url + "/get_score", body) for _ in range(20)]
        metrics = requests.get(logic.url + "/metrics", timeout=10).text
        ready = requests.get(logic.url + "/ready", timeout=10)
    finally:
        signal_tree(graph, signal.SIGCONT)
        logic.stop()
    record(
        "breaker open (graph frozen)",
        requests=len(fast),
        statuses=statuses(fast),
        max_ms=round(max(o.seconds for o in fast) * 1000, 1),
    )
    assert all(o.status == 503 and o.json_ok for o in fast), [(o.status, o.body) for o in fast]
    assert max(o.seconds for o in fast) < 0.25
    assert re.search(r"^logic_graph_breaker_state\{[^}]*\} 2(\.0)?$", metrics, re.M), metrics
    assert ready.status_code == 200, ready.text
