"""The graph tier dies or freezes under 16-client load; the logic tier stays up and honest.

Real graph-service (dense SavedModel) and real logic-service (gunicorn, 2 workers x 4 threads)
on free ports. SIGKILL of the whole graph process tree, then the same command on the same
port; SIGSTOP of the tree (what a GC pause, a stuck GPU or a saturated node looks like from
outside), then SIGCONT.
"""

from __future__ import annotations

import contextlib
import re
import signal
import statistics
import time

import psutil
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
    tree,
    wait_for,
)

pytestmark = pytest.mark.fault

CLIENTS = 16
WORKERS = 2  # start_logic's default
RECOVERY_BOUND = 2.0
FREEZE = 8.0
# Issue 19's bounds: once a hang is evident a request is answered 503 within 1 s, and within
# 1 s of the graph answering again requests flow.
FAIL_FAST_BOUND = 1.0
FLOW_BOUND = 1.0
# A functional bound: a probe answered in milliseconds normally, never near the budget of
# the graph calls it shares the process with (2 s in this suite).
PROBE_BOUND = 1.0


def _body(fault_bed):
    records = fault_bed.records(3)
    return lambda _client, _sequence: {"data": records}


def _connections_per_worker(logic) -> list[int]:
    """Established client connections each logic worker holds."""
    counts = []
    for process in tree(logic)[1:]:
        with contextlib.suppress(psutil.NoSuchProcess):
            counts.append(
                sum(
                    1
                    for c in process.net_connections("tcp")
                    if c.laddr and c.laddr.port == logic.port and c.status == "ESTABLISHED"
                )
            )
    return sorted(counts)


def _load_on_every_worker(logic, body) -> tuple[Load, list[int]]:
    """16 keep-alive clients whose connections reach every worker. gthread's accept race can
    hand one worker all of them, and a worker without traffic has no calls to judge: its
    first request after a freeze is the call that hangs (it keeps its own deadline)."""
    for _ in range(5):
        load = Load(logic.url, CLIENTS, body).start()
        time.sleep(0.5)
        spread = _connections_per_worker(logic)
        if len(spread) == WORKERS and min(spread) >= 2:
            return load, spread
        load.stop()
    raise AssertionError(f"16 clients never reached every worker: {spread}")


def _openings(logic) -> float:
    """Breaker openings so far, summed over the logic tier's workers."""
    text = requests.get(logic.url + "/metrics", timeout=10).text
    found = re.findall(
        r'^logic_graph_breaker_events_total\{[^}]*event="opened_\w+"[^}]*\} (\S+)$', text, re.M
    )
    return sum(float(value) for value in found)


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


def test_graph_frozen_under_load_503_at_once_when_evident_and_200_within_1s_of_sigcont(
    fault_bed, graph, tmp_path
) -> None:
    """SIGSTOP under 16 clients: the calls in flight go overdue (logic_service/graph/overdue.py:
    past max(1 s, 10 x their p99)) and the breaker opens while they are still in flight. From
    then on a new request is answered 503 at once, naming the graph, the requests queued
    behind the stuck calls too; the stuck calls keep their own budget. /health stays fast
    throughout. SIGCONT: the probe waiting on the frozen graph (and the stuck calls) are
    answered and requests flow again within 1 s.

    The service's default budgets (10 s), as in issue 19: with the suite's 2 s a stuck call
    on this shared box can time out before it is overdue (a p99 over 200 ms puts the limit
    past 2 s), and then only the failures-in-a-row path is left."""
    logic = start_logic(
        fault_bed,
        graph.url,
        tmp_path / "logic.log",
        env={"LOGIC_REQUEST_TIMEOUT": "10", "LOGIC_GRAPH_READ_TIMEOUT": "10"},
    )
    body = _body(fault_bed)(0, 0)
    probes: list[tuple[float, int]] = []
    callers: list = []  # one request at a time, each on a new connection, during the freeze
    after: list = []  # the same after SIGCONT
    try:
        load, spread = _load_on_every_worker(logic, _body(fault_bed))
        time.sleep(1.5)  # hundreds of answered calls per worker: the rule judges
        signal_tree(graph, signal.SIGSTOP)
        frozen_at = time.monotonic()
        wait_for(lambda: any(o.status == 503 for o in list(load.outcomes)), 10, "a 503")
        first_503_at = time.monotonic()
        # Evident to the whole tier: each worker has judged the hang and opened its breaker.
        wait_for(lambda: _openings(logic) >= WORKERS, 10, "every worker's breaker opening")
        evident_at = time.monotonic()
        while time.monotonic() - frozen_at < FREEZE:
            start = time.monotonic()
            try:
                status = requests.get(logic.url + "/health", timeout=10).status_code
            except requests.RequestException:
                status = 0
            probes.append((time.monotonic() - start, status))
            callers.append(post(requests, logic.url + "/get_score", body))
            time.sleep(0.1)
        signal_tree(graph, signal.SIGCONT)
        thawed_at = time.monotonic()
        while time.monotonic() - thawed_at < 3:
            after.append(post(requests, logic.url + "/get_score", body))
            time.sleep(0.02)
        time.sleep(2)
        outcomes = load.stop()
        assert logic.alive() and graph.alive()
    finally:
        signal_tree(graph, signal.SIGCONT)
        logic.stop()

    seconds = sorted(s for s, _ in probes)
    first_200 = next((o for o in after if o.status == 200), None)
    recovered = None if first_200 is None else first_200.started + first_200.seconds - thawed_at
    # Requests whose call was in flight when the graph froze: answered only after SIGCONT.
    stuck = [o for o in outcomes if o.started < evident_at and o.started + o.seconds > thawed_at]
    limits = sorted(
        {
            match.group(1)
            for o in outcomes
            if o.status == 503 and isinstance(o.body, dict)
            for match in [re.search(r"overdue after (\S+s, recent p99 \d+ ms)", o.body["msg"])]
            if match
        }
    )
    late = [o for o in outcomes + after if o.started >= thawed_at + FLOW_BOUND]
    record(
        f"graph SIGSTOP under 16-client load, SIGCONT after {FREEZE:.0f} s",
        requests=len(outcomes) + len(callers) + len(after),
        load_statuses=statuses(outcomes),
        load_connections_per_worker=spread,
        first_503_after_s=round(first_503_at - frozen_at, 2),
        every_worker_open_after_s=round(evident_at - frozen_at, 2),
        first_request_after_evident=f"{callers[0].status} in {callers[0].seconds * 1000:.1f} ms",
        requests_during_freeze=statuses(callers),
        slowest_during_freeze_ms=round(max(o.seconds for o in callers) * 1000, 1),
        stuck_in_flight=f"{len(stuck)}: {statuses(stuck)}",
        limits_at_opening=limits,
        health_p50_ms=round(statistics.median(seconds) * 1000, 1),
        health_max_ms=round(seconds[-1] * 1000, 1),
        first_200_after_sigcont_s=None if recovered is None else round(recovered, 3),
    )
    assert all(status == 200 for _, status in probes), probes
    assert seconds[-1] < PROBE_BOUND, f"slowest /health {seconds[-1]:.3f}s"
    # The first request sent once the hang is evident, and every one after it: 503 at once.
    assert callers[0].status == 503 and callers[0].seconds < FAIL_FAST_BOUND, callers[0]
    assert all(o.status == 503 and o.json_ok for o in callers), statuses(callers)
    assert max(o.seconds for o in callers) < FAIL_FAST_BOUND
    message = callers[0].body["msg"]
    assert message.startswith("graph credit at http://") and "tried again" in message, message
    failed = [o for o in outcomes if o.status != 200]
    assert all(o.status in (503, 504) and o.json_ok for o in failed), [
        (o.status, o.body) for o in failed if o.status not in (503, 504) or not o.json_ok
    ][:5]
    # Only calls already in flight wait for the graph: a few per worker, not every client.
    assert len(stuck) < CLIENTS, statuses(outcomes)
    assert len(limits) >= 1, "no 503 named the overdue rule"
    assert recovered is not None and recovered < FLOW_BOUND, statuses(after)
    assert late and all(o.status == 200 for o in late), statuses(late)


def test_get_score_fails_fast_once_the_breaker_opens(fault_bed, graph, tmp_path) -> None:
    """After LOGIC_BREAKER_FAILURES (5) graph calls in a row time out, /get_score answers 503 at
    once and /ready stays 200. The calls are tripped one request at a time: concurrent requests
    share batches, so eight of them may be only two or three graph calls. No call was ever
    answered, so the overdue rule has nothing to judge by: this is the failures-in-a-row path.
    The reset is long so that the phase shows the open state, not the probe."""
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
