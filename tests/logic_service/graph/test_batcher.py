"""Micro-batching end to end: the real graph-service (SavedModels) and the logic tier under
gunicorn, many concurrent keep-alive clients.

The stack is started fresh for this module and the first test bursts it at once: the
conditions of the burst failure in issue 10 (16 keep-alive clients against a freshly started
stack that said ready). Every answer must equal what the same request gets alone.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests

from devtools.logic_tier import start_logic_service
from devtools.savedmodels import dense_reference, start_graph_service, write_dense_savedmodel
from devtools.sklearn_artifacts import credit_records
from devtools.traffic import metric
from logic_service.deadline import Deadline
from logic_service.errors import GraphUnavailableError
from logic_service.graph.batcher import Batcher, Entry, Signal

CLIENTS = 16


@pytest.fixture(scope="module")
def fresh_stack(sklearn_artifacts, tmp_path_factory):
    from converters.models_config import ModelEntry, ModelsConfig, default_base_path

    width = sklearn_artifacts.credit_features(credit_records(1)).shape[1]
    models = tmp_path_factory.mktemp("batching_models")
    write_dense_savedmodel(models / "credit" / "1", width, seed=3)
    config = ModelsConfig(models / "models.config")
    config.upsert(ModelEntry("credit", default_base_path("credit")))
    config.save()
    logs = tmp_path_factory.mktemp("batching_logs")
    graph = start_graph_service(models / "models.config", logs)
    # Two pipelines on one servable: they share the target, hence its batches.
    pipelines = sklearn_artifacts.write_config(
        "batching_e2e.yaml",
        {
            "default": "credit",
            "pipelines": {
                "credit": {"transformer": "credit/transformer.pkl", "graph_model": "credit"},
                "credit_twin": {
                    "transformer": "credit/transformer.pkl",
                    "graph_model": "credit",
                    "max_batch_rows": 64,
                },
                "credit_unbatched": {
                    "transformer": "credit/transformer.pkl",
                    "graph_model": "credit",
                    "batching": False,
                },
            },
        },
    )
    logic = start_logic_service(pipelines, logs / "logic.log", env={"GRAPH_SERVICE_URL": graph.url})
    try:
        deadline = time.monotonic() + 60
        while requests.get(logic.url + "/ready", timeout=5).status_code != 200:
            assert time.monotonic() < deadline, logic.log()[-2000:]
            time.sleep(0.1)
        yield logic
    finally:
        logic.stop()
        graph.stop()


def _bodies(n: int) -> list[dict]:
    names = ("credit", "credit_twin", "credit_unbatched")
    return [
        {"model": names[i % 3], "data": credit_records(1 + i % 4, seed=500 + i)} for i in range(n)
    ]


def _run_clients(url: str, bodies: list[dict], rounds: int) -> list[list[requests.Response]]:
    """One keep-alive session per client, all released at once, `rounds` requests each."""
    gate = threading.Barrier(len(bodies))

    def client(i: int) -> list[requests.Response]:
        with requests.Session() as session:
            gate.wait()
            return [
                session.post(url + "/get_score", json=bodies[i], timeout=60) for _ in range(rounds)
            ]

    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(client, range(len(bodies))))


def test_burst_on_a_fresh_stack_answers_every_request_as_if_alone(
    fresh_stack, sklearn_artifacts
) -> None:
    """Regression for issue 10's burst: 16 keep-alive clients at once against a stack that has
    just said ready. No 5xx, and each answer equals the answer the request gets alone."""
    logic = fresh_stack
    bodies = _bodies(CLIENTS)
    answers = _run_clients(logic.url, bodies, rounds=50)
    problems = [
        f"client {i}: {r.status_code} {r.text[:200]}"
        for i, responses in enumerate(answers)
        for r in responses
        if r.status_code != 200
    ]
    assert problems == []
    for i, body in enumerate(bodies):
        alone = requests.post(logic.url + "/get_score", json=body, timeout=30)
        assert alone.status_code == 200, alone.text
        expected = dense_reference(sklearn_artifacts.credit_features(body["data"]), seed=3)
        np.testing.assert_allclose(alone.json()["data"], expected, rtol=1e-5, atol=1e-6)
        for response in answers[i]:
            np.testing.assert_allclose(
                response.json()["data"], alone.json()["data"], rtol=1e-6, atol=1e-7
            )


def test_under_load_graph_calls_are_fewer_than_requests(fresh_stack) -> None:
    logic = fresh_stack
    calls_before = metric(logic.url, "logic_graph_calls_total", target="credit")
    requests_before = metric(logic.url, "logic_requests_total", status="200")
    answers = _run_clients(logic.url, _bodies(CLIENTS), rounds=25)
    assert all(r.status_code == 200 for responses in answers for r in responses)
    calls = metric(logic.url, "logic_graph_calls_total", target="credit") - calls_before
    served = metric(logic.url, "logic_requests_total", status="200") - requests_before
    assert served == CLIENTS * 25
    assert 0 < calls < served, (calls, served)
    # One target for the three pipelines: one set of batch series.
    assert metric(logic.url, "logic_batch_rows_count", target="credit") > 0
    text = requests.get(logic.url + "/metrics", timeout=10).text
    assert 'logic_batch_queue_wait_seconds_count{target="credit"}' in text
    assert 'target="credit_twin"' not in text


def test_a_bad_request_in_a_burst_gets_its_400_and_the_rest_200(fresh_stack) -> None:
    logic = fresh_stack
    bodies = _bodies(CLIENTS)
    bad = {3, 8, 13}
    for i in bad:
        bodies[i] = {"model": bodies[i]["model"], "data": [{**bodies[i]["data"][0], "age": "old"}]}
    answers = _run_clients(logic.url, bodies, rounds=10)
    for i, responses in enumerate(answers):
        statuses = {r.status_code for r in responses}
        if i in bad:
            assert statuses == {400}, responses[0].text
            assert "age" in responses[0].json()["msg"]
        else:
            assert statuses == {200}, [r.text for r in responses if r.status_code != 200][:1]


def test_pipelines_and_ready_report_the_shared_target(fresh_stack) -> None:
    logic = fresh_stack
    info = requests.get(logic.url + "/pipelines", timeout=10).json()["data"]["pipelines"]
    batching = {p["name"]: p["model"]["batching"] for p in info}
    assert batching == {"credit": True, "credit_twin": True, "credit_unbatched": False}
    ready = requests.get(logic.url + "/ready", timeout=5).json()["data"]
    assert list(ready["graph"]) == ["credit"]
    assert ready["graph"]["credit"]["breaker"]["state"] == "closed"


def test_signal_wakes_its_waiter_once_set_and_times_out_otherwise() -> None:
    """The batcher's one-shot signal (a bare lock, cheaper than threading.Event)."""
    done = Signal()
    assert not done.wait(0.01) and not done.is_set()
    results = []
    waiter = threading.Thread(target=lambda: results.append(done.wait(10)))
    waiter.start()
    done.set()
    done.set()  # setting twice is harmless
    waiter.join(10)
    assert results == [True]
    assert done.wait(0) and done.wait(1) and done.is_set()


def test_fail_queued_answers_the_queue_at_once_and_leaves_the_call_in_flight() -> None:
    """What a breaker opening does to a target's queue: the requests waiting for the stuck
    call's slot get the error now; the request riding in that call keeps waiting for it."""
    release = threading.Event()

    def send(entries):
        release.wait(10)
        return [entry.rows for entry in entries]

    batcher = Batcher("t", send, slots=1)

    def entry() -> Entry:
        return Entry({}, 1, "k", Deadline(10), 10, "id")

    with ThreadPoolExecutor(3) as pool:
        in_flight = pool.submit(batcher.submit, entry())
        time.sleep(0.2)  # it took the only slot
        queued = [pool.submit(batcher.submit, entry()) for _ in range(2)]
        time.sleep(0.2)
        assert batcher.queued() == 2
        assert batcher.fail_queued(GraphUnavailableError("graph t is failing")) == 2
        for future in queued:
            with pytest.raises(GraphUnavailableError, match="graph t is failing"):
                future.result(timeout=1)
        assert batcher.queued() == 0 and not in_flight.done()
        release.set()
        assert in_flight.result(timeout=5) == 1
