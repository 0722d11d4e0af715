"""The watchdog and the prober with real processes: the logic tier under gunicorn in front of
a TinyGraphTier that can be frozen (requests accepted, none answered) and thawed.

A frozen graph opens the breaker while its call is still in flight: the requests queued
behind that call and every new one are answered 503 at once, the call in flight keeps its own
deadline, a probe call (not a caller's request) waits on the graph, and the moment the graph
answers it the breaker closes. A model that is merely slow never trips it.
"""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from devtools.logic_tier import TinyGraphTier, start_logic_service
from devtools.sklearn_artifacts import credit_records
from logic_service.graph.target import PROBE_REQUEST_ID

# The rule made quick for a test: judged after 5 answered calls, overdue after 300 ms at least.
FAST_RULE = {
    "LOGIC_OVERDUE_MIN_CALLS": "5",
    "LOGIC_OVERDUE_FLOOR_MS": "300",
    "LOGIC_BREAKER_RESET_SECONDS": "1",
}
IN_FLIGHT_BUDGET_MS = 1500
# Functional bounds with a wide margin on this shared machine: the overdue limit is 0.3 s.
FAST = 1.0


def _start(sklearn_artifacts, tmp_path, tier: TinyGraphTier, model: str, env: dict[str, str]):
    config = sklearn_artifacts.write_config(
        f"prober_{model}.yaml",
        {"pipelines": {model: {"transformer": "credit/transformer.pkl", "graph_model": model}}},
    )
    return start_logic_service(
        config,
        tmp_path / f"logic_{model}.log",
        env={"GRAPH_SERVICE_URL": tier.url, **env},
        workers=1,
        threads=8,
    )


def _post(server, model: str, budget_ms: int | None = None) -> tuple[float, requests.Response]:
    headers = {"X-Request-Timeout-Ms": str(budget_ms)} if budget_ms else {}
    start = time.monotonic()
    response = requests.post(
        server.url + "/get_score",
        json={"model": model, "data": credit_records(1)},
        headers=headers,
        timeout=30,
    )
    return time.monotonic() - start, response


def _events(server) -> dict[str, float]:
    text = requests.get(server.url + "/metrics", timeout=10).text
    return {
        event: float(value)
        for event, value in re.findall(
            r'^logic_graph_breaker_events_total\{[^}]*event="(\w+)"[^}]*\} (\S+)$', text, re.M
        )
    }


def _width(sklearn_artifacts) -> int:
    return sklearn_artifacts.credit_features(credit_records(1)).shape[1]


def test_a_frozen_graph_fails_queued_and_new_requests_fast_and_a_probe_reopens_the_flow(
    sklearn_artifacts, tmp_path
) -> None:
    tier = TinyGraphTier(_width(sklearn_artifacts)).start()
    server = _start(sklearn_artifacts, tmp_path, tier, "echo", FAST_RULE)
    try:
        for _ in range(10):
            assert _post(server, "echo")[1].status_code == 200
        tier.freeze()
        frozen_at = time.monotonic()
        # One request goes out alone and hangs; the three after it queue behind its call.
        gate = threading.Barrier(4)

        def caught(_: int) -> tuple[float, requests.Response]:
            gate.wait()
            return _post(server, "echo", IN_FLIGHT_BUDGET_MS)

        with ThreadPoolExecutor(4) as pool:
            burst = pool.map(caught, range(4))
            time.sleep(0.8)  # past the 0.3 s limit: the breaker is open
            new_seconds, new = _post(server, "echo")
            ready = requests.get(server.url + "/ready", timeout=5)
            burst = sorted(burst, key=lambda pair: pair[1].status_code)
        time.sleep(max(0.0, frozen_at + 3.0 - time.monotonic()))  # the caught call timed out
        assert _events(server).get("probe_answered", 0) == 0
        tier.thaw()
        thawed_at = time.monotonic()
        while (answer := _post(server, "echo"))[1].status_code != 200:
            assert answer[1].status_code == 503, answer[1].text
            assert time.monotonic() - thawed_at < 5, "the breaker did not close"
            time.sleep(0.02)
        recovered = time.monotonic() - thawed_at
        events = _events(server)
        closed = requests.get(server.url + "/ready", timeout=5).json()["data"]["graph"]["echo"]
    finally:
        server.stop()
        tier.stop()

    statuses = [response.status_code for _, response in burst]
    assert statuses == [503, 503, 503, 504], [r.text for _, r in burst]
    assert all(seconds < FAST for seconds, _ in burst[:3]), [s for s, _ in burst]
    assert burst[3][0] >= IN_FLIGHT_BUDGET_MS / 1000 * 0.95  # in flight: its own deadline
    assert new.status_code == 503 and new_seconds < FAST / 4, (new_seconds, new.text)
    message = new.json()["msg"]
    assert message.startswith(f"graph echo at {tier.url} is failing (a call in flight for ")
    assert "overdue after " in message and "recent p99 " in message
    assert "tried again as soon as it answers the probe sent" in message
    assert ready.status_code == 200
    breaker = ready.json()["data"]["graph"]["echo"]["breaker"]
    assert breaker["state"] == "half-open" and "overdue" in breaker["reason"]
    assert recovered < FAST, f"first 200 {recovered:.2f}s after the graph answered again"
    assert events.get("opened_overdue") == 1 and events.get("probe_answered", 0) >= 1
    assert closed["breaker"]["state"] == "closed"
    assert PROBE_REQUEST_ID in tier.request_ids


def test_a_steady_300_ms_model_never_trips_it_even_with_a_lower_floor(
    sklearn_artifacts, tmp_path
) -> None:
    """The floor (100 ms here) is below the model's 300 ms: what keeps it closed is the
    measured part of the rule, 10 x its p99."""
    tier = TinyGraphTier(_width(sklearn_artifacts), delay=0.3).start()
    env = {**FAST_RULE, "LOGIC_OVERDUE_FLOOR_MS": "100"}
    server = _start(sklearn_artifacts, tmp_path, tier, "slow", env)
    stop = threading.Event()
    outcomes: list[int] = []

    def client() -> None:
        session = requests.Session()
        while not stop.is_set():
            response = session.post(
                server.url + "/get_score",
                json={"model": "slow", "data": credit_records(1)},
                timeout=30,
            )
            outcomes.append(response.status_code)

    try:
        threads = [threading.Thread(target=client) for _ in range(8)]
        for thread in threads:
            thread.start()
        time.sleep(6)
        target = requests.get(server.url + "/ready", timeout=5).json()["data"]["graph"]["slow"]
        stop.set()
        for thread in threads:
            thread.join(30)
        events = _events(server)
    finally:
        server.stop()
        tier.stop()
    assert outcomes and set(outcomes) == {200}, outcomes
    assert not any(event.startswith("opened") for event in events), events
    assert target["breaker"]["state"] == "closed"
    assert target["calls"]["overdue_after_seconds"] >= 2.9, target
