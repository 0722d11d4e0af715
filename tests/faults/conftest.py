"""The fault suite's tools: real tiers on free ports, a load generator, process-tree faults.

Every test here is marked `fault` and left out of the default run (pyproject addopts);
`make test-faults` runs the bounded slice CI uses, `make test-faults-full` the long one
(FAULT_FULL=1: 20,000 requests for the memory check, more fuzzing examples). Each test adds
its figures to one table, printed at the end of the run and written to $FAULT_REPORT.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from devtools.logic_tier import start_logic_service
from devtools.savedmodels import (
    dense_reference,
    start_graph_service,
    write_dense_savedmodel,
    write_models_config,
)
from devtools.servers import ServerProcess, start_server
from devtools.sklearn_artifacts import SklearnArtifacts, credit_records

FULL = os.environ.get("FAULT_FULL", "") not in {"", "0"}
# The defaults the suite's logic tiers run with: a short budget so faults show in seconds,
# and the breaker (wp-graphpath) retrying an open target every second.
# A small body limit, so the suite's oversized bodies are cheap to build and send.
MAX_BODY = 64 * 1024

FAST_FAILURE_ENV = {
    "LOGIC_GRAPH_READ_TIMEOUT": "2",
    "LOGIC_REQUEST_TIMEOUT": "2",
    "LOGIC_BREAKER_RESET_SECONDS": "1",
    "LOGIC_ACCESS_LOG": "",
}

_REPORT: list[dict[str, Any]] = []


# -- figures --------------------------------------------------------------------------------


def record(fault: str, **figures: Any) -> None:
    """Add one row to the suite's table (printed at the end, written to $FAULT_REPORT)."""
    _REPORT.append({"fault": fault, **figures})


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _REPORT:
        return
    lines = ["", "fault suite figures" + (" (FAULT_FULL)" if FULL else " (bounded CI slice)")]
    for row in _REPORT:
        details = ", ".join(f"{key}={value}" for key, value in row.items() if key != "fault")
        lines.append(f"  {row['fault']}: {details}")
    terminalreporter.write_line("\n".join(lines))
    target = os.environ.get("FAULT_REPORT")
    if target:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        Path(target).write_text("\n".join(lines[1:]) + "\n")


# -- process trees --------------------------------------------------------------------------


def tree(server: ServerProcess) -> list[psutil.Process]:
    """The server's process and everything it forked (gunicorn master + workers)."""
    root = psutil.Process(server.process.pid)
    return [root, *root.children(recursive=True)]


def signal_tree(server: ServerProcess, sig: int) -> None:
    for process in tree(server):
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(sig)


def tree_rss_mb(server: ServerProcess) -> float:
    total = 0
    for process in tree(server):
        with contextlib.suppress(psutil.NoSuchProcess):
            total += process.memory_info().rss
    return total / 2**20


def kill_tree(server: ServerProcess) -> None:
    """SIGKILL every process of the server at once, as an OOM kill or a node loss does."""
    processes = tree(server)
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(processes, timeout=10)
    server.process.wait(10)


def restart(server: ServerProcess, ready_path: str) -> ServerProcess:
    """The same command on the same port (the graph tier coming back where callers expect it)."""
    return start_server(
        server.argv,
        server.port,
        server.log_path.with_name(server.log_path.stem + "-restarted.log"),
        ready_path=ready_path,
        ready_status=(200,),
        timeout=180,
    )


# -- load -------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """One request as the client saw it."""

    started: float  # time.monotonic()
    seconds: float
    status: int | str  # HTTP status, or "refused" / "connection" / "timeout"
    json_ok: bool  # a JSON body whose "code" equals the HTTP status
    body: Any = None


def is_refused(error: BaseException) -> bool:
    text = repr(error)
    return "Connection refused" in text or "ConnectionRefusedError" in text


def post(
    session: requests.Session | Any,
    url: str,
    body: dict | bytes,
    timeout: float = 30,
    headers: dict[str, str] | None = None,
) -> Outcome:
    """POST /get_score and classify the outcome (never raises for a transport error)."""
    started = time.monotonic()
    try:
        if isinstance(body, bytes):
            response = session.post(
                url,
                data=body,
                headers={"Content-Type": "application/json", **(headers or {})},
                timeout=timeout,
            )
        else:
            response = session.post(url, json=body, headers=headers, timeout=timeout)
    except requests.Timeout:
        return Outcome(started, time.monotonic() - started, "timeout", False)
    except requests.ConnectionError as error:
        kind = "refused" if is_refused(error) else "connection"
        return Outcome(started, time.monotonic() - started, kind, False)
    except requests.exceptions.ChunkedEncodingError:
        # The body was cut off after the headers (a worker SIGKILLed mid-response): a lost
        # connection too, counted as one instead of ending the load thread unrecorded.
        return Outcome(started, time.monotonic() - started, "connection", False)
    seconds = time.monotonic() - started
    try:
        payload = response.json()
        json_ok = isinstance(payload, dict) and payload.get("code") == response.status_code
    except ValueError:
        payload, json_ok = response.text[:200], False
    return Outcome(started, seconds, response.status_code, json_ok, payload)


@dataclass
class Load:
    """`clients` threads, each with its own keep-alive session, POSTing until stopped."""

    url: str
    clients: int
    body: Callable[[int, int], dict | bytes]  # (client, sequence) -> request body
    timeout: float = 30
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Load:
        for client in range(self.clients):
            thread = threading.Thread(target=self._run, args=(client,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def _run(self, client: int) -> None:
        session = requests.Session()
        sequence = 0
        while not self._stop.is_set():
            outcome = post(
                session, self.url + "/get_score", self.body(client, sequence), self.timeout
            )
            with self._lock:
                self.outcomes.append(outcome)
            sequence += 1
            if outcome.status in ("refused", "connection"):
                time.sleep(0.05)  # a real client backs off a little on a refused connection

    def stop(self) -> list[Outcome]:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)
        return list(self.outcomes)

    def __enter__(self) -> Load:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def statuses(outcomes: list[Outcome]) -> dict[str, int]:
    return dict(sorted(Counter(str(outcome.status) for outcome in outcomes).items()))


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll until `predicate()`; returns the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {timeout}s")


# -- the tiers ------------------------------------------------------------------------------


@dataclass
class FaultBed:
    """What every fault test starts from: artifacts, a models/ folder, a pipeline file."""

    artifacts: SklearnArtifacts
    models: Path
    pipelines: Path
    width: int

    def records(self, n: int, seed: int = 1) -> list[dict[str, Any]]:
        return credit_records(n, seed)

    def expected(self, records: list[dict[str, Any]], seed: int) -> list[float]:
        """What the dense graph model with weights `seed` scores for these records."""
        features = self.artifacts.credit_features(records)
        return [float(row[0]) for row in dense_reference(features, seed=seed)]


GRAPH_SEED = 3


@pytest.fixture(scope="session")
def fault_bed(sklearn_artifacts: SklearnArtifacts, tmp_path_factory) -> FaultBed:
    """`credit` scores on the graph tier (dense model, seed 3), `local` in-process."""
    width = sklearn_artifacts.credit_features(credit_records(1)).shape[1]
    models = tmp_path_factory.mktemp("fault_models")
    write_dense_savedmodel(models / "credit" / "1", width, seed=GRAPH_SEED)
    write_models_config(models / "models.config", {"credit": ""})
    pipelines = sklearn_artifacts.write_config(
        "faults.yaml",
        {
            "default": "credit",
            "pipelines": {
                "credit": {"transformer": "credit/transformer.pkl", "graph_model": "credit"},
                "local": {"transformer": "credit/transformer.pkl", "model": "credit/sk_model.pkl"},
            },
        },
    )
    return FaultBed(sklearn_artifacts, models, pipelines, width)


@pytest.fixture
def graph(fault_bed: FaultBed, tmp_path: Path) -> Iterator[ServerProcess]:
    """A fresh real graph-service over the bed's models (a test may kill or freeze it)."""
    server = start_graph_service(fault_bed.models / "models.config", tmp_path)
    try:
        yield server
    finally:
        if server.alive():
            signal_tree(server, signal.SIGCONT)
        server.stop()


def start_logic(
    fault_bed: FaultBed,
    graph_url: str,
    log: Path,
    *,
    env: dict[str, str] | None = None,
    config: Path | None = None,
    workers: int = 2,
    threads: int = 4,
) -> ServerProcess:
    server = start_logic_service(
        config or fault_bed.pipelines,
        log,
        env={"GRAPH_SERVICE_URL": graph_url, **FAST_FAILURE_ENV, **(env or {})},
        workers=workers,
        threads=threads,
    )
    # Ready means the graph signature has been read: a test's first request is a real one.
    wait_for(
        lambda: requests.get(server.url + "/ready", timeout=10).status_code == 200,
        60,
        "logic /ready 200",
    )
    return server


@pytest.fixture
def logic(fault_bed: FaultBed, graph: ServerProcess, tmp_path: Path) -> Iterator[ServerProcess]:
    """A logic tier (body limit MAX_BODY) in front of this test's graph tier."""
    server = start_logic(
        fault_bed,
        graph.url,
        tmp_path / "logic.log",
        env={"LOGIC_MAX_CONTENT_LENGTH": str(MAX_BODY)},
    )
    yield server
    server.stop()
