"""The logic tier's gunicorn worker (logic_service/http/worker.py) and settings, with real processes.

Probes on their own lanes: every request thread waits on a graph tier that takes seconds, and
GET /health and GET /ready still answer at once, on new and on kept-alive connections, while
an ordinary request queued behind the graph calls does not. SIGTERM: requests in flight are
answered 200, /ready says 503 on a connection that is still open, new connections are
refused, the process exits 0. Bad LOGIC_* values end the start with one line and exit 2.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
import requests

from devtools.logic_tier import TinyGraphTier, start_logic_service
from devtools.servers import ServerProcess, script
from devtools.sklearn_artifacts import credit_records
from logic_service.http.worker import RequestPool, Task, choose_cpu, pins_workers, probe_lane

GRAPH_DELAY = 4.0
THREADS = 2
# A functional bound, far above the milliseconds a probe takes, far below GRAPH_DELAY.
PROBE_BOUND = 1.0
MAX_BODY = 32 * 1024


@pytest.fixture
def start_blocked_stack(sklearn_artifacts, tmp_path):
    """Starts one worker with 2 request threads in front of a graph tier that takes 4 s per
    call; keyword arguments add LOGIC_* settings."""
    started: list[tuple[ServerProcess, TinyGraphTier]] = []

    def start(**settings: str) -> tuple[ServerProcess, TinyGraphTier]:
        width = sklearn_artifacts.credit_features(credit_records(1)).shape[1]
        tier = TinyGraphTier(width, delay=GRAPH_DELAY).start()
        config = sklearn_artifacts.write_config(
            "worker_lanes.yaml",
            {
                "pipelines": {
                    "slow": {
                        "transformer": "credit/transformer.pkl",
                        "graph_model": "slow",
                        "timeout": 30,
                    },
                }
            },
        )
        server = start_logic_service(
            config,
            tmp_path / "logic.log",
            env={
                "GRAPH_SERVICE_URL": tier.url,
                "LOGIC_MAX_CONTENT_LENGTH": str(MAX_BODY),
                # The last of 4 requests waits 8 s for a thread (the budget counts it), then 4 s.
                "LOGIC_REQUEST_TIMEOUT": "30",
                **settings,
            },
            workers=1,
            threads=THREADS,
        )
        started.append((server, tier))
        return server, tier

    yield start
    for server, tier in started:
        server.stop()
        tier.stop()


@pytest.fixture
def blocked_stack(start_blocked_stack):
    return start_blocked_stack()


def _score(server: ServerProcess) -> requests.Response:
    return requests.post(
        server.url + "/get_score", json={"model": "slow", "data": credit_records(1)}, timeout=60
    )


def _timed_get(url: str, session: requests.Session | None = None) -> tuple[float, int]:
    start = time.perf_counter()
    response = (session or requests).get(url, timeout=10)
    return time.perf_counter() - start, response.status_code


def test_probe_lane_matches_only_complete_probe_request_lines() -> None:
    assert probe_lane(b"GET /health HTTP/1.1\r\nHost: x\r\n") == "/health"
    assert probe_lane(b"GET /ready?verbose=1 HTTP/1.1\r\n") == "/ready"
    assert probe_lane(b"GET /healthz HTTP/1.1\r\n") is None
    assert probe_lane(b"POST /health HTTP/1.1\r\n") is None
    assert probe_lane(b"GET /heal") is None
    assert probe_lane(b"POST /get_score HTTP/1.1\r\n") is None
    assert probe_lane(b"") is None


def test_probes_answer_at_once_while_every_request_thread_waits_on_the_graph(
    blocked_stack,
) -> None:
    server, _ = blocked_stack
    with ThreadPoolExecutor(2 * THREADS) as pool:
        scoring = [pool.submit(_score, server) for _ in range(2 * THREADS)]
        time.sleep(0.5)  # both request threads are inside a graph call, two more queued
        # An ordinary request queues behind the graph calls: the starvation is real ...
        with pytest.raises(requests.ReadTimeout):
            requests.get(server.url + "/pipelines", timeout=PROBE_BOUND)
        # ... and the probes are not part of it, on new and on kept-alive connections.
        kept_alive = requests.Session()
        timings = []
        for _ in range(5):
            for path in ("/health", "/ready"):
                timings.append((path, *_timed_get(server.url + path)))
                timings.append((path + " keep-alive", *_timed_get(server.url + path, kept_alive)))
        assert all(status == 200 for _, _, status in timings), timings
        slowest = max(seconds for _, seconds, _ in timings)
        assert slowest < PROBE_BOUND, timings
        assert all(future.result().status_code == 200 for future in scoring)


def test_sigterm_answers_requests_in_flight_refuses_new_ones_and_says_not_ready(
    blocked_stack,
) -> None:
    server, tier = blocked_stack
    tier.delay = 2.0
    kept_alive = requests.Session()
    assert kept_alive.get(server.url + "/ready", timeout=10).status_code == 200
    with ThreadPoolExecutor(THREADS) as pool:
        in_flight = [pool.submit(_score, server) for _ in range(THREADS)]
        time.sleep(0.5)
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        draining = kept_alive.get(server.url + "/ready", timeout=10)
        assert draining.status_code == 503, draining.text
        assert draining.json()["code"] == 503
        assert "draining" in draining.json()["msg"]
        assert draining.headers.get("Connection", "").lower() == "close"
        start = time.perf_counter()
        with pytest.raises(requests.ConnectionError):
            requests.get(server.url + "/health", timeout=5)
        assert time.perf_counter() - start < PROBE_BOUND, "a new connection hung, not refused"
        answers = [future.result() for future in in_flight]
    assert [answer.status_code for answer in answers] == [200] * THREADS
    assert all(len(answer.json()["data"]) == 1 for answer in answers)
    assert server.process.wait(30) == 0
    assert "draining: listeners closed" in server.log()


# Long enough that waiting for a linger to end shows, far longer than serving a request takes.
LONG_LINGER = {"LOGIC_KEEPALIVE_LINGER_MS": "3000", "LOGIC_KEEPALIVE": "60"}


def _timed_score(server: ServerProcess) -> tuple[float, int]:
    start = time.perf_counter()
    status = _score(server).status_code
    return time.perf_counter() - start, status


def test_a_lingering_thread_gives_way_to_a_request_queued_for_a_thread(
    start_blocked_stack,
) -> None:
    """A thread waiting for a kept-alive connection's next request must not hold up a request
    that has no thread: of two graph calls arriving together (one per thread), neither waits
    out the 3 s linger, and the idle connection stays usable."""
    server, _ = start_blocked_stack(**LONG_LINGER, LOGIC_GRAPH_CONCURRENCY="2")
    idle = requests.Session()
    assert idle.get(server.url + "/pipelines", timeout=10).status_code == 200  # now lingers
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: _timed_score(server), range(2)))
    assert [status for _, status in answers] == [200, 200]
    slowest = max(seconds for seconds, _ in answers)
    assert slowest < GRAPH_DELAY + 1.5, f"a request waited for the linger: {answers}"
    assert idle.get(server.url + "/health", timeout=10).status_code == 200


def test_requests_sent_back_to_back_in_one_packet_are_answered_at_once(
    start_blocked_stack,
) -> None:
    """Pipelined requests: the second is already read into the worker's buffer, so the
    lingering thread serves it at once instead of waiting for the socket to be readable."""
    server, _ = start_blocked_stack(**LONG_LINGER)
    request = b"GET /pipelines HTTP/1.1\r\nHost: x\r\n\r\n"
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request * 2)
        statuses = [_read_response(sock) for _ in range(2)]
    assert time.perf_counter() - start < 1.5, "the second request waited for the linger"
    assert statuses == [b"HTTP/1.1 200 OK"] * 2


def _read_response(sock: socket.socket) -> bytes:
    """One Content-Length response from a raw socket; its status line."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(1)
        assert chunk, f"connection closed after {received!r}"
        received += chunk
    head = received.decode("latin-1").lower()
    length = int(head.split("content-length:")[1].split("\r\n")[0])
    body = b""
    while len(body) < length:
        body += sock.recv(length - len(body))
    return received.split(b"\r\n")[0]


def test_sigterm_ends_a_linger_at_once(start_blocked_stack) -> None:
    """A thread lingering on a kept-alive connection (linger 30 s) stops on SIGTERM: the
    worker exits in seconds, not after the linger or gunicorn's graceful timeout."""
    server, _ = start_blocked_stack(LOGIC_KEEPALIVE_LINGER_MS="30000", LOGIC_KEEPALIVE="60")
    idle = requests.Session()
    assert idle.get(server.url + "/pipelines", timeout=10).status_code == 200  # now lingers
    time.sleep(0.2)
    start = time.perf_counter()
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(15) == 0
    assert time.perf_counter() - start < 10


def test_one_request_thread_never_lingers() -> None:
    pool, single = RequestPool(3), RequestPool(1)
    try:
        assert pool.start_lingering() and pool.start_lingering()
        assert not pool.start_lingering()
        pool.stop_lingering()
        assert pool.start_lingering()
        assert pool.backlog() == 0
        assert not single.start_lingering()
    finally:
        pool.shutdown(wait=True)
        single.shutdown(wait=True)


def test_the_cpu_for_a_new_worker_is_the_one_fewest_workers_use() -> None:
    assert choose_cpu({0, 1, 2, 3}, []) == 0
    assert choose_cpu({0, 1, 2, 3}, [0, 2]) == 1
    assert choose_cpu({4, 6}, [4, 6, 6]) == 4  # a replacement takes the freed CPU
    assert choose_cpu({0, 1}, [0, 1, 0]) == 1
    assert pins_workers("auto", workers=2, cpus=2) and pins_workers("auto", workers=4, cpus=2)
    assert not pins_workers("auto", workers=2, cpus=64)  # a big shared node: free to move
    assert pins_workers("on", workers=2, cpus=64) and not pins_workers("off", workers=2, cpus=2)


def _worker_cpus(server: ServerProcess, count: int) -> dict[int, list[int]]:
    """{worker pid: the CPUs it may run on} once `count` workers are up."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        children = psutil.Process(server.process.pid).children()
        if len(children) == count:
            try:
                return {child.pid: sorted(child.cpu_affinity()) for child in children}
            except psutil.NoSuchProcess:
                pass
        time.sleep(0.1)
    raise AssertionError(f"{count} workers did not come up: {server.log()[-2000:]}")


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="CPU affinity is Linux-only")
def test_workers_run_on_one_cpu_each_and_a_replacement_takes_the_freed_one(
    sklearn_artifacts, tmp_path
) -> None:
    allowed = sorted(os.sched_getaffinity(0))
    width = sklearn_artifacts.credit_features(credit_records(1)).shape[1]
    tier = TinyGraphTier(width).start()
    config = sklearn_artifacts.write_config(
        "pinned.yaml",
        {"pipelines": {"credit": {"transformer": "credit/transformer.pkl", "graph_model": "echo"}}},
    )
    env = {"GRAPH_SERVICE_URL": tier.url, "LOGIC_PIN_WORKERS": "on"}
    server = start_logic_service(config, tmp_path / "pinned.log", env=env, workers=2)
    try:
        cpus = _worker_cpus(server, 2)
        assert sorted(cpus.values()) == sorted([[allowed[0]], [allowed[1 % len(allowed)]]])
        # The worker on the highest CPU: "always the lowest" would not give its CPU back.
        victim, (freed,) = max(cpus.items(), key=lambda item: item[1])
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while victim in (after := _worker_cpus(server, 2)) and time.monotonic() < deadline:
            time.sleep(0.1)
        (replacement,) = set(after) - set(cpus)
        assert after[replacement] == [freed]
        answer = requests.post(
            server.url + "/get_score", json={"data": credit_records(1)}, timeout=30
        )
        assert answer.status_code == 200, answer.text
    finally:
        server.stop()
    unpinned = start_logic_service(
        config, tmp_path / "free.log", env={**env, "LOGIC_PIN_WORKERS": "off"}, workers=2
    )
    try:
        assert all(cpus == allowed for cpus in _worker_cpus(unpinned, 2).values())
    finally:
        unpinned.stop()
        tier.stop()


def clean_env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.startswith("LOGIC_")}


def test_a_large_body_left_unread_closes_the_connection_and_says_so(blocked_stack) -> None:
    """gthread closes a keep-alive connection after > 64 KB of unread body: announce it.

    A Content-Length over the app's limit is refused (413) before any of the body is read.
    """
    server, _ = blocked_stack
    session = requests.Session()
    headers = {"Content-Type": "application/json"}
    refused = session.post(
        server.url + "/get_score", data=b" " * 200_000, headers=headers, timeout=10
    )
    assert refused.status_code == 413
    assert refused.headers.get("Connection", "").lower() == "close"
    # Over the limit but within what gthread drains: the connection stays usable.
    small = session.post(
        server.url + "/get_score", data=b" " * (MAX_BODY + 100), headers=headers, timeout=10
    )
    assert small.status_code == 413
    assert small.headers.get("Connection", "").lower() != "close"
    for _ in range(20):
        assert session.get(server.url + "/health", timeout=10).status_code == 200


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LOGIC_THREADS", "four"),
        ("LOGIC_WORKERS", "0"),
        ("LOGIC_GRACEFUL_TIMEOUT", "-1"),
        ("LOGIC_KEEPALIVE", "5s"),
        ("LOGIC_KEEPALIVE_LINGER_MS", "-1"),
        ("LOGIC_PIN_WORKERS", "always"),
        ("LOGIC_LOG_LEVEL", "loud"),
    ],
)
def test_a_bad_gunicorn_setting_is_one_line_and_exit_2(
    name: str, value: str, tmp_path: Path
) -> None:
    config = tmp_path / "pipelines.yaml"
    config.write_text("pipelines: {}\n")
    result = subprocess.run(
        [script("logic-service"), "--config", str(config), "--bind", "127.0.0.1:0"],
        env={**clean_env(), name: value},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"logic-service: error: {name}={value!r}")


def test_gunicorn_run_on_the_conf_file_directly_refuses_a_bad_setting_too(tmp_path: Path) -> None:
    conf = Path(__file__).resolve().parents[3] / "logic_service" / "http" / "gunicorn.conf.py"
    result = subprocess.run(
        [script("gunicorn"), "-c", str(conf), "--check-config"],
        env={**clean_env(), "LOGIC_THREADS": "four"},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "LOGIC_THREADS='four' must be a whole number >= 1" in result.stderr


def test_request_pool_runs_tasks_and_hands_results_and_errors_to_callbacks() -> None:
    """gthread's contract with its pool: result() gives the value or raises the error, and a
    callback added before or after the task finished is called exactly once."""
    pool = RequestPool(2)
    try:
        release = threading.Event()
        seen: list[tuple[str, object]] = []

        def report(task: Task) -> None:
            try:
                seen.append(("ok", task.result()))
            except ValueError as error:
                seen.append(("error", str(error)))

        slow = pool.submit(lambda: release.wait(10) and 42)
        slow.add_done_callback(report)  # before it finished

        def broken() -> None:
            raise ValueError("bad request")

        failing = pool.submit(broken)
        finished = threading.Event()
        failing.add_done_callback(lambda task: finished.set())
        assert finished.wait(10)
        failing.add_done_callback(report)  # after it finished: called at once, here
        assert seen == [("error", "bad request")]
        release.set()
        deadline = time.monotonic() + 10
        while len(seen) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert seen == [("error", "bad request"), ("ok", 42)]
        assert not slow.cancelled()
    finally:
        pool.shutdown(wait=True)
    assert not any(thread.is_alive() for thread in pool._threads)
