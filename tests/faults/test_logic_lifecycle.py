"""The logic tier stopped (SIGTERM, a rolling update) or losing a worker (SIGKILL) under load.

SIGTERM: every request already received is answered 200, however it waits (on a thread, in
the thread pool's queue, in the listen backlog); new connections are refused; exit 0.
SIGKILL of one worker: gunicorn forks a new one; only requests that worker had lose their
answer, every other client carries on.
"""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest
import requests

from devtools.logic_tier import TinyGraphTier
from tests.faults.conftest import Load, post, record, start_logic, statuses, tree, wait_for

pytestmark = pytest.mark.fault

CLIENTS = 16


def test_sigterm_with_16_requests_in_flight_answers_every_one_200(fault_bed, tmp_path) -> None:
    """16 requests on 2 workers x 4 threads, each graph call 1.5 s: 8 run, 8 wait their turn."""
    tier = TinyGraphTier(fault_bed.width, delay=1.5).start()
    config = fault_bed.artifacts.write_config(
        "faults_slow.yaml",
        {
            "pipelines": {
                "slow": {
                    "transformer": "credit/transformer.pkl",
                    "graph_model": "slow",
                    "timeout": 30,
                }
            }
        },
    )
    logic = start_logic(
        fault_bed,
        tier.url,
        tmp_path / "logic.log",
        config=config,
        env={"LOGIC_REQUEST_TIMEOUT": "30"},
    )
    body = {"data": fault_bed.records(2)}
    try:
        with ThreadPoolExecutor(CLIENTS) as pool:
            futures = [
                pool.submit(post, requests, logic.url + "/get_score", body) for _ in range(CLIENTS)
            ]
            time.sleep(0.4)
            signaled_at = time.monotonic()
            logic.process.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            refused = post(requests, logic.url + "/get_score", body, timeout=5)
            outcomes = [future.result() for future in futures]
        code = logic.process.wait(30)
        stopped_after = time.monotonic() - signaled_at
    finally:
        logic.stop()
        tier.stop()
    record(
        "logic SIGTERM with requests in flight",
        requests=len(outcomes),
        statuses=statuses(outcomes),
        new_connection=refused.status,
        exit_code=code,
        stopped_after_seconds=round(stopped_after, 1),
    )
    assert [o.status for o in outcomes] == [200] * CLIENTS, [(o.status, o.body) for o in outcomes]
    assert all(len(o.body["data"]) == 2 for o in outcomes)
    assert refused.status == "refused", refused
    assert code == 0


def test_sigterm_under_keep_alive_load_loses_no_request(fault_bed, graph, tmp_path) -> None:
    """Continuous load: each request is answered 200 or its connection is refused, nothing else."""
    logic = start_logic(fault_bed, graph.url, tmp_path / "logic.log")
    records = fault_bed.records(3)
    try:
        load = Load(logic.url, CLIENTS, lambda _c, _s: {"data": records}, timeout=30).start()
        time.sleep(2)
        signaled_at = time.monotonic()
        logic.process.send_signal(signal.SIGTERM)
        code = logic.process.wait(30)
        time.sleep(0.5)
        outcomes = load.stop()
    finally:
        logic.stop()
    after = [o for o in outcomes if o.started >= signaled_at]
    record(
        "logic SIGTERM under 16-client keep-alive load",
        requests=len(outcomes),
        statuses=statuses(outcomes),
        exit_code=code,
    )
    assert code == 0
    assert all(o.status in (200, "refused") for o in outcomes), statuses(outcomes)
    assert any(o.status == "refused" for o in after), "new connections were not refused"


def test_a_killed_worker_is_replaced_and_only_its_requests_are_lost(
    fault_bed, graph, tmp_path
) -> None:
    logic = start_logic(fault_bed, graph.url, tmp_path / "logic.log")
    records = fault_bed.records(3)
    try:
        load = Load(logic.url, CLIENTS, lambda _c, _s: {"data": records}, timeout=30).start()
        time.sleep(2)
        master, *workers = tree(logic)
        assert len(workers) == 2
        victim = workers[0]
        held = [
            c
            for c in victim.net_connections(kind="tcp")
            if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == logic.port
        ]
        killed_at = time.monotonic()
        victim.kill()
        replaced = wait_for(
            lambda: {p.pid for p in master.children()} - {w.pid for w in workers},
            20,
            "a new worker",
        )
        time.sleep(3)
        outcomes = load.stop()
        assert logic.alive()
    finally:
        logic.stop()
    failed = [o for o in outcomes if o.status != 200]
    late = [o for o in outcomes if o.started >= killed_at + replaced + 1]
    record(
        "logic worker SIGKILL under load",
        requests=len(outcomes),
        statuses=statuses(outcomes),
        connections_on_killed_worker=len(held),
        replaced_after_seconds=round(replaced, 2),
    )
    # Lost: at most one request per connection the dead worker held, as a connection error.
    assert all(o.status in ("connection", "refused") for o in failed), statuses(failed)
    assert len([o for o in failed if o.status == "connection"]) <= len(held)
    assert late and all(o.status == 200 for o in late), statuses(late)
