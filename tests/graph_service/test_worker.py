"""The REST and gRPC ports are open exactly while a worker with loaded models serves them.

Real graph-service processes with a model slow to load for a real reason (a 3-million-word
vocabulary table, filled when the version loads), probed with plain TCP connects: until the
models are loaded a connect is refused (ECONNREFUSED), never accepted and left waiting; on a
first start, when gunicorn's master replaces a worker that died, and when a graceful stop
begins while a request is still running.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import psutil
import pytest
import requests
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_service_pb2_grpc,
)

from devtools.savedmodels import write_spin_savedmodel
from devtools.servers import free_port, script

LOADED = "loaded vocab version 1"
START_TIMEOUT = 180.0


@dataclass
class Opening:
    """How a port opened: connects refused before the first accepted one, and what the
    server's log said at the moment that first connect was accepted."""

    refused: int
    log_at_accept: str
    sock: socket.socket


@dataclass
class Graph:
    process: subprocess.Popen
    log_path: Path
    rest_port: int
    grpc_port: int

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode


def launch(base_path: Path, tmp_path: Path, name: str = "vocab") -> Graph:
    """graph-service on free ports, not waited for: the test watches it come up."""
    rest_port, grpc_port = free_port(), free_port()
    log_path = tmp_path / f"graph-{rest_port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                script("graph-service"),
                f"--model_name={name}",
                f"--model_base_path={base_path}",
                f"--rest_api_port={rest_port}",
                f"--port={grpc_port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    return Graph(process, log_path, rest_port, grpc_port)


def watch_openings(graph: Graph) -> tuple[Opening, Opening]:
    """Connect to both ports in turn every 20 ms until each has accepted a connection;
    count the refusals before it. Returns the (REST, gRPC) openings."""
    ports = (graph.rest_port, graph.grpc_port)
    refused = dict.fromkeys(ports, 0)
    opened: dict[int, Opening] = {}
    deadline = time.monotonic() + START_TIMEOUT
    while len(opened) < len(ports):
        assert time.monotonic() < deadline, f"ports not open in {START_TIMEOUT}s:\n{graph.log()}"
        assert graph.process.poll() is None, f"exited {graph.process.returncode}:\n{graph.log()}"
        for port in ports:
            if port in opened:
                continue
            sock = socket.socket()
            sock.settimeout(10)
            try:
                sock.connect(("127.0.0.1", port))
            except ConnectionRefusedError:
                sock.close()
                refused[port] += 1
                continue
            opened[port] = Opening(refused[port], graph.log(), sock)
        time.sleep(0.02)
    return opened[graph.rest_port], opened[graph.grpc_port]


def rest_status_on(sock: socket.socket, port: int) -> dict:
    """GET /v1/models/vocab on the connection the port accepted first."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.sock = sock
    conn.request("GET", "/v1/models/vocab")
    response = conn.getresponse()
    body = json.loads(response.read())
    conn.close()
    assert response.status == 200, body
    return body


def grpc_state(port: int) -> int:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = "vocab"
        answer = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
            request, timeout=30
        )
    return answer.model_version_status[0].state


def assert_opens_loaded(graph: Graph, loads: int) -> tuple[int, int]:
    """Both ports refuse until the `loads`-th load of the model is logged, then answer at
    once with the model AVAILABLE. Returns the refusals seen on (REST, gRPC)."""
    rest, grpc_opening = watch_openings(graph)
    # Each log was read the instant its port accepted: the model had already loaded.
    assert rest.log_at_accept.count(LOADED) == loads, rest.log_at_accept
    assert grpc_opening.log_at_accept.count(LOADED) == loads, grpc_opening.log_at_accept
    grpc_opening.sock.close()
    status = rest_status_on(rest.sock, graph.rest_port)
    assert status["model_version_status"][0]["state"] == "AVAILABLE", status
    assert grpc_state(graph.grpc_port) == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    return rest.refused, grpc_opening.refused


def predict_word(graph: Graph, word: str) -> int:
    response = requests.post(
        f"http://127.0.0.1:{graph.rest_port}/v1/models/vocab:predict",
        json={"instances": [word]},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response.json()["predictions"][0]


def test_both_ports_refuse_until_the_model_is_loaded_then_answer(vocab_model_base, tmp_path):
    """As TF Serving: no port opens before the models in the config have loaded."""
    graph = launch(vocab_model_base, tmp_path)
    try:
        refused = assert_opens_loaded(graph, loads=1)
        assert all(count > 0 for count in refused), refused  # the load was watched, refused
        assert predict_word(graph, "w2999999") == 2_999_999
    finally:
        code = graph.stop()
    assert code == 0, graph.log()
    # The worker says when and where it listens; gunicorn's master (which binds nothing)
    # does not claim an empty "Listening at:".
    assert f"Listening at: http://0.0.0.0:{graph.rest_port} (" in graph.log()
    assert graph.log().count("Listening at:") == 1


def test_a_worker_that_dies_is_replaced_behind_a_refusing_port(vocab_model_base, tmp_path):
    """gunicorn's master forks a new worker when one dies (an OOM kill): while it loads the
    models again, both ports refuse connections instead of queueing them."""
    graph = launch(vocab_model_base, tmp_path)
    try:
        assert_opens_loaded(graph, loads=1)
        (worker,) = psutil.Process(graph.process.pid).children()
        worker.kill()
        worker.wait(10)
        refused = assert_opens_loaded(graph, loads=2)
        assert all(count > 0 for count in refused), refused
        assert predict_word(graph, "w7") == 7
    finally:
        code = graph.stop()
    assert code == 0, graph.log()


def test_a_rest_port_taken_during_the_load_stops_with_exit_4(vocab_model_base, tmp_path):
    """The port was free at start (checked), then another server took it while the models
    loaded: the worker cannot bind it, says so in one line, and the service stops with exit
    4 instead of forking worker after worker."""
    graph = launch(vocab_model_base, tmp_path)
    squatter = socket.socket()
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while "Booting worker" not in graph.log():  # past the start-up check, now loading
            assert time.monotonic() < deadline and graph.process.poll() is None, graph.log()
            time.sleep(0.05)
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("0.0.0.0", graph.rest_port))
        squatter.listen()
        code = graph.process.wait(START_TIMEOUT)
    finally:
        squatter.close()
        graph.stop()
    log = graph.log()
    assert code == 4, log
    assert LOADED in log  # found by the bind after the load, not by the start-up check
    assert (
        f"graph-service: cannot open the REST port 0.0.0.0:{graph.rest_port} "
        "(OSError: Address already in use); is another server on it? "
        "Pass --rest_api_port=N for another port"
    ) in log
    assert log.count("Booting worker") == 1


@pytest.fixture
def spin_graph(tmp_path):
    write_spin_savedmodel(tmp_path / "models" / "spin" / "1")
    graph = launch(tmp_path / "models" / "spin", tmp_path, name="spin")
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            requests.get(f"http://127.0.0.1:{graph.rest_port}/v1/models/spin", timeout=5)
            break
        except requests.ConnectionError:
            assert time.monotonic() < deadline and graph.process.poll() is None, graph.log()
            time.sleep(0.1)
    yield graph
    graph.stop()


def test_sigterm_refuses_new_connections_while_a_request_drains(spin_graph):
    """A graceful stop closes the REST port at once: a new connection is refused while a
    request already running finishes with its answer, then the process exits 0."""
    url = f"http://127.0.0.1:{spin_graph.rest_port}/v1/models/spin:predict"

    def spin(iterations: int) -> requests.Response:
        return requests.post(url, json={"instances": [iterations]}, timeout=60)

    spin(1)  # warm up: the first call pays a one-time graph optimisation
    started = time.monotonic()
    spin(200)
    per_iteration = (time.monotonic() - started) / 200
    # About 3 s of work: well past the SIGTERM below, well inside the 10 s drain.
    iterations = int(min(max(3.0 / per_iteration, 200), 100_000))
    with ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit(spin, iterations)
        time.sleep(0.5)
        assert not in_flight.done()
        spin_graph.process.send_signal(signal.SIGTERM)
        refused_while_draining = False
        deadline = time.monotonic() + 5
        while not in_flight.done() and time.monotonic() < deadline:
            with socket.socket() as sock:
                try:
                    sock.connect(("127.0.0.1", spin_graph.rest_port))
                except ConnectionRefusedError:
                    refused_while_draining = not in_flight.done()
                    break
            time.sleep(0.02)
        answer = in_flight.result(timeout=60)
    assert refused_while_draining, "the port kept accepting while the request drained"
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"][0]["iterations_run"] == iterations
    assert spin_graph.process.wait(30) == 0, spin_graph.log()
    assert np.isfinite(answer.json()["predictions"][0]["checksum"])
