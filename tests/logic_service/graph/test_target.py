"""The graph target's own machinery, proven against real processes: the logic tier under
gunicorn and a controllable HTTP graph tier (TinyGraphTier: slow, failing or picky on demand).

Single-flight signature reads, failures remembered briefly, the breaker opening and closing,
a queued request answered 504 at its own deadline, and a batch the graph refuses re-sent per
request so each gets the answer it would have got alone.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests

from devtools.logic_tier import TinyGraphTier, start_logic_service
from devtools.sklearn_artifacts import credit_records
from logic_service.errors import GraphRejectedError
from logic_service.graph.target import FAILURE_MEMORY_SECONDS, PROBE_REQUEST_ID, split_outputs


def _width(sklearn_artifacts) -> int:
    return sklearn_artifacts.credit_features(credit_records(1)).shape[1]


def _start(sklearn_artifacts, tmp_path, name: str, tier: TinyGraphTier, pipelines, *, env=None):
    config = sklearn_artifacts.write_config(f"{name}.yaml", {"pipelines": pipelines})
    return start_logic_service(
        config,
        tmp_path / f"{name}.log",
        env={"GRAPH_SERVICE_URL": tier.url, **(env or {})},
        workers=1,
        threads=8,
    )


def _post(server, model: str, records, headers=None) -> requests.Response:
    return requests.post(
        server.url + "/get_score",
        json={"model": model, "data": records},
        headers=headers or {},
        timeout=30,
    )


def _burst(n: int, call) -> list[requests.Response]:
    """`n` calls released at the same moment."""
    gate = threading.Barrier(n)

    def one(i: int) -> requests.Response:
        gate.wait()
        return call(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def _metric(server, name: str, **labels: str) -> float:
    text = requests.get(server.url + "/metrics", timeout=10).text
    want = ",".join(f'{key}="{value}"' for key, value in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and all(part in line for part in want.split(",")):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name}{{{want}}} not in /metrics")


def test_signature_reads_are_single_flight_and_failures_remembered(
    sklearn_artifacts, tmp_path
) -> None:
    """One metadata call serves every request waiting for it, whether it fails, times out or
    succeeds; /ready never waits on it."""
    tier = TinyGraphTier(_width(sklearn_artifacts))
    pipelines = {"echo": {"transformer": "credit/transformer.pkl", "graph_model": "echo"}}
    # The graph tier is not there at start-up: the signature is still unread in the worker.
    server = _start(sklearn_artifacts, tmp_path, "single_flight", tier, pipelines)
    try:
        tier.start()
        time.sleep(FAILURE_MEMORY_SECONDS + 0.3)  # the start-up failure is forgotten
        records = credit_records(2)

        tier.metadata_status, tier.metadata_delay = 500, 0.5
        before = tier.metadata_calls
        answers = _burst(6, lambda _: _post(server, "echo", records))
        assert [r.status_code for r in answers] == [502] * 6, [r.text for r in answers]
        assert "metadata is broken today" in answers[0].json()["msg"]
        assert tier.metadata_calls - before == 1

        time.sleep(FAILURE_MEMORY_SECONDS + 0.3)
        tier.metadata_status, tier.metadata_delay = 200, 3.0
        before = tier.metadata_calls
        deadline = {"X-Request-Timeout-Ms": "800"}
        answers = _burst(4, lambda _: _post(server, "echo", records, deadline))
        assert [r.status_code for r in answers] == [504] * 4, [r.text for r in answers]
        assert tier.metadata_calls - before == 1
        ready = requests.get(server.url + "/ready", timeout=2)
        assert ready.status_code == 503 and "not read yet" in ready.json()["msg"]

        time.sleep(3.0)  # the slow read above finishes and is forgotten on the graph side
        tier.metadata_delay = 0.5
        before = tier.metadata_calls
        answers = _burst(8, lambda _: _post(server, "echo", records))
        assert [r.status_code for r in answers] == [200] * 8, [r.text for r in answers]
        assert tier.metadata_calls - before <= 1
        ready = requests.get(server.url + "/ready", timeout=2)
        assert ready.status_code == 200, ready.text
        assert ready.json()["data"]["graph"]["echo"]["signature_read"] is True
    finally:
        server.stop()
        tier.stop()


def test_breaker_opens_fails_fast_and_closes_after_a_probe(sklearn_artifacts, tmp_path) -> None:
    tier = TinyGraphTier(_width(sklearn_artifacts)).start()
    pipelines = {
        "echo": {"transformer": "credit/transformer.pkl", "graph_model": "echo"},
        "local": {
            "transformer": "credit/transformer.pkl",
            "model": "credit/sk_model.pkl",
            "method": "predict_proba",
        },
    }
    env = {
        "LOGIC_BREAKER_FAILURES": "2",
        "LOGIC_BREAKER_RESET_SECONDS": "1",
        "LOGIC_GRAPH_RETRIES": "0",
    }
    server = _start(sklearn_artifacts, tmp_path, "breaker", tier, pipelines, env=env)
    records = credit_records(1)
    try:
        assert _post(server, "echo", records).status_code == 200
        assert _metric(server, "logic_graph_breaker_state", target="echo") == 0
        tier.stop()
        for _ in range(2):
            down = _post(server, "echo", records)
            assert down.status_code == 503 and "unreachable" in down.json()["msg"], down.text
        fast = _post(server, "echo", records)
        assert fast.status_code == 503 and fast.json()["code"] == 503
        assert "graph echo at" in fast.json()["msg"] and "tried again in" in fast.json()["msg"]
        assert _post(server, "local", records).status_code == 200  # in-process: untouched
        ready = requests.get(server.url + "/ready", timeout=2)
        assert ready.status_code == 200
        assert ready.json()["data"]["graph"]["echo"]["breaker"]["state"] == "open"
        assert _metric(server, "logic_graph_breaker_state", target="echo") == 2

        tier.start()
        until = time.monotonic() + 15
        while _post(server, "echo", records).status_code != 200:
            assert time.monotonic() < until, "the breaker never closed after the graph came back"
            time.sleep(0.2)
        ready = requests.get(server.url + "/ready", timeout=2).json()
        assert ready["data"]["graph"]["echo"]["breaker"]["state"] == "closed"
        assert _metric(server, "logic_graph_breaker_state", target="echo") == 0
        # The probe was the target's own call (the last answered row), not a caller's request.
        assert PROBE_REQUEST_ID in tier.request_ids
        assert _metric(server, "logic_graph_breaker_events_total", event="probe_answered") == 1
        assert _metric(server, "logic_graph_breaker_events_total", event="opened_failures") == 1
    finally:
        server.stop()
        tier.stop()


@pytest.fixture(scope="module")
def batching_stack(sklearn_artifacts, tmp_path_factory):
    tier = TinyGraphTier(_width(sklearn_artifacts), delay=2.0).start()
    pipelines = {
        name: {"transformer": "credit/transformer.pkl", "graph_model": name}
        for name in ("slow", "picky")
    }
    server = _start(
        sklearn_artifacts, tmp_path_factory.mktemp("batching"), "batching", tier, pipelines
    )
    yield server, tier
    server.stop()
    tier.stop()


def test_a_queued_request_past_its_deadline_gets_504(batching_stack) -> None:
    server, _ = batching_stack
    first: dict[str, requests.Response] = {}
    ahead = threading.Thread(
        target=lambda: first.setdefault("r", _post(server, "slow", credit_records(1)))
    )
    ahead.start()
    time.sleep(0.5)  # the first request's graph call holds the target's only call slot
    late = _post(server, "slow", credit_records(2), {"X-Request-Timeout-Ms": "600"})
    ahead.join()
    body = late.json()
    assert late.status_code == 504 and body["code"] == 504, body
    assert "passed while queued" in body["msg"]
    assert first["r"].status_code == 200, first["r"].text


def test_a_refused_batch_is_resent_so_only_the_bad_request_fails(
    batching_stack, sklearn_artifacts
) -> None:
    """The graph refuses any call holding one out-of-range row: batched with it, the good
    requests still get their own 200 and the right numbers; the bad ones their 502."""
    server, tier = batching_stack
    tier.picky_delay = 0.2  # requests pile up behind the call in flight
    good = {i: credit_records(1 + i % 3, seed=100 + i) for i in range(12)}
    bad = {i for i in good if i % 4 == 1}
    for i in bad:
        good[i][0]["income"] = 1e9

    def call(i: int) -> requests.Response:
        return _post(server, "picky", good[i], {"X-Request-ID": f"burst-{i}"})

    answers = _burst(12, call)
    for i, response in enumerate(answers):
        if i in bad:
            assert response.status_code == 502, response.text
            assert "out of range" in response.json()["msg"]
        else:
            assert response.status_code == 200, response.text
            features = sklearn_artifacts.credit_features(good[i]).astype(np.float32)
            np.testing.assert_allclose(
                response.json()["data"], features.sum(axis=1, keepdims=True), rtol=1e-5
            )
    lines = [json.loads(line) for line in server.log().splitlines() if '"request_id"' in line]
    burst = {ln["request_id"]: ln for ln in lines if ln["request_id"].startswith("burst-")}
    assert set(burst) == {f"burst-{i}" for i in range(12)}
    assert all("batch_id" in line and "batch_size" in line for line in burst.values())
    assert max(line["batch_size"] for line in burst.values()) > 1, "no batch formed"


def test_connections_the_graph_dropped_are_not_retried_on_more_stale_ones(
    sklearn_artifacts, tmp_path
) -> None:
    """Issue 10's burst signature: several pooled keep-alive connections closed by the graph
    at once. After one drop the client discards its idle connections and retries on a new
    one, instead of trying the next stale pooled connection (3 attempts, 3 failures, 503)."""
    tier = TinyGraphTier(_width(sklearn_artifacts)).start()
    pipelines = {"picky": {"transformer": "credit/transformer.pkl", "graph_model": "picky"}}
    env = {"LOGIC_BATCHING": "0", "LOGIC_BREAKER_FAILURES": "0"}
    server = _start(sklearn_artifacts, tmp_path, "dropped", tier, pipelines, env=env)
    try:
        tier.picky_delay = 0.3  # 6 concurrent calls: 6 pooled connections afterwards
        answers = _burst(6, lambda i: _post(server, "picky", credit_records(1, seed=i)))
        assert [r.status_code for r in answers] == [200] * 6
        tier.picky_delay = 0.0
        tier.drop_reused = 5
        response = _post(server, "picky", credit_records(2))
        assert response.status_code == 200, response.text
        assert tier.dropped == 1
    finally:
        server.stop()
        tier.stop()


def test_the_deadline_counts_the_wait_for_a_request_thread(sklearn_artifacts, tmp_path) -> None:
    """One request thread, held 2 s by a slow graph call: a request that waited for the
    thread longer than its own budget is answered 504 when it gets one, not scored late as
    if its budget had started then."""
    tier = TinyGraphTier(_width(sklearn_artifacts), delay=2.0).start()
    pipelines = {
        name: {"transformer": "credit/transformer.pkl", "graph_model": name}
        for name in ("slow", "echo")
    }
    config = sklearn_artifacts.write_config("one-thread.yaml", {"pipelines": pipelines})
    server = start_logic_service(
        config,
        tmp_path / "one-thread.log",
        env={"GRAPH_SERVICE_URL": tier.url},
        workers=1,
        threads=1,
    )
    try:
        assert _post(server, "echo", credit_records(1)).status_code == 200  # echo answers at once
        first: dict[str, requests.Response] = {}
        ahead = threading.Thread(
            target=lambda: first.setdefault("r", _post(server, "slow", credit_records(1)))
        )
        ahead.start()
        time.sleep(0.5)  # the only request thread now waits on the slow graph call
        late = _post(server, "echo", credit_records(1), {"X-Request-Timeout-Ms": "1000"})
        ahead.join()
        body = late.json()
        assert late.status_code == 504 and body["code"] == 504, body
        assert "deadline" in body["msg"], body
        assert first["r"].status_code == 200, first["r"].text
        # With time to spare, the same request scores.
        assert _post(server, "echo", credit_records(1)).status_code == 200
    finally:
        server.stop()
        tier.stop()


def test_a_batch_answer_is_cut_back_by_each_request_rows() -> None:
    scores = np.arange(6, dtype=np.float32).reshape(6, 1)
    pieces = split_outputs(scores, [1, 3, 2], "credit")
    assert [piece.ravel().tolist() for piece in pieces] == [[0.0], [1.0, 2.0, 3.0], [4.0, 5.0]]
    named = split_outputs({"p": scores, "c": np.arange(6)}, [4, 2], "credit")
    assert [part["c"].tolist() for part in named] == [[0, 1, 2, 3], [4, 5]]
    assert named[1]["p"].shape == (2, 1)
    with pytest.raises(GraphRejectedError, match="outputs must have one row per input row"):
        split_outputs(scores, [4, 4], "credit")
