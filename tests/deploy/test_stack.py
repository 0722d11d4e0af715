"""scripts/stack.py end to end: train -> convert-h5 -> graph-service -> logic-service -> /get_score.

The stack is started once for the module (`stack.py up`, a real subprocess on free ports, with
a copy of examples/credit so the repository's artifacts and models/ are left alone); the
tests talk to it over HTTP, run the `demo` request check against it in-process, and finally
stop it with SIGTERM the way a process manager would. Error paths that need no servers run
`main(argv)` in-process.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import joblib
import pandas as pd
import psutil
import pytest
import requests

from devtools.servers import STACK_PY, free_port, stack_up

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "credit"
START_TIMEOUT = 600


def load_stack() -> ModuleType:
    spec = importlib.util.spec_from_file_location("stack_script", STACK_PY)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


stack = load_stack()


@dataclass
class Running:
    process: subprocess.Popen
    output: Path
    work: Path
    example: Path
    graph_port: int
    logic_port: int
    grpc_port: int

    @property
    def logic_url(self) -> str:
        return f"http://127.0.0.1:{self.logic_port}"

    @property
    def graph_url(self) -> str:
        return f"http://127.0.0.1:{self.graph_port}"

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def argv(self, command: str, example: Path | None = None) -> list[str]:
        return [
            command,
            "--example-dir",
            str(example or self.example),
            "--models-dir",
            str(self.work / "models"),
            "--run-dir",
            str(self.work / "run"),
            "--graph-port",
            str(self.graph_port),
            "--logic-port",
            str(self.logic_port),
            "--grpc-port",
            str(self.grpc_port),
        ]


def copy_example(destination: Path) -> Path:
    shutil.copytree(
        EXAMPLE, destination, ignore=shutil.ignore_patterns("artifacts", "__pycache__", "*.md")
    )
    return destination


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    work = tmp_path_factory.mktemp("stack")
    example = copy_example(work / "credit")
    run = Running(None, work / "stack.out", work, example, free_port(), free_port(), free_port())
    with stack_up(
        [*run.argv("up"), "--timeout", str(START_TIMEOUT)],
        run.output,
        cwd=work,
        timeout=START_TIMEOUT,
        env={**os.environ, "LOGIC_WORKERS": "1"},
    ) as run.process:
        yield run


def scores(body: dict) -> list[float]:
    """One float per record, whether the service answers `p` or `[p]` per record."""
    return [float(item[0] if isinstance(item, list) else item) for item in body["data"]]


def test_up_trains_converts_and_prints_a_curl_to_try(running: Running) -> None:
    assert (running.example / "artifacts" / "model.h5").exists()
    assert (running.example / "artifacts" / "transformer.pkl").exists()
    assert (running.work / "models" / "credit" / "1" / "saved_model.pb").exists()
    assert 'name: "credit"' in (running.work / "models" / "models.config").read_text()
    assert f"curl -s -X POST {running.logic_url}/get_score" in running.text()
    for log in ("train.log", "convert.log", "compile.log", "graph.log", "logic.log"):
        assert (running.work / "run" / log).exists(), f"no {log}"
    # The pipeline is served from its compiled build: nothing unpickled in the logic tier.
    info = requests.get(f"{running.logic_url}/pipelines", timeout=10).json()["data"]
    engine = info["pipelines"][0]["engine"]
    assert engine["name"] == "onnx" and "nothing unpickled" in engine["reason"], engine


def test_get_score_answers_with_the_converted_keras_model(running: Running) -> None:
    """The logic tier's scores are the graph tier's predictions on the transformer's features."""
    body = json.loads((running.example / "requests" / "three_applicants.json").read_text())
    response = requests.post(f"{running.logic_url}/get_score", json=body, timeout=30)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["msg"] == "Successful!"
    assert answer["code"] == 200
    got = scores(answer)
    assert len(got) == 3
    assert all(0.0 <= p <= 1.0 for p in got)
    # Applicant 2 (unemployed, debt ratio 0.64, four late payments) is the risky one.
    assert got[1] > got[0]
    assert got[1] > got[2]

    transformer = joblib.load(running.example / "artifacts" / "transformer.pkl")
    features = transformer.transform(pd.DataFrame(body["data"])).astype("float32")
    graph = requests.post(
        f"{running.graph_url}/v1/models/credit:predict",
        json={"instances": features.tolist()},
        timeout=30,
    )
    assert graph.status_code == 200, graph.text
    expected = [row[0] for row in graph.json()["predictions"]]
    assert got == pytest.approx(expected, abs=1e-6)


def test_demo_requests_are_scored_and_the_bad_one_refused(
    running: Running, capsys: pytest.CaptureFixture
) -> None:
    _, settings = stack.parse_args(running.argv("demo"))
    stack.demo(settings)
    printed = capsys.readouterr().out
    assert printed.count("-> HTTP 200") == 2
    assert "bad_missing_field.json" in printed
    assert "debt_ratio" in printed  # the refusal names the missing field


def test_demo_fails_when_an_answer_is_not_what_the_request_expects(
    running: Running, tmp_path: Path
) -> None:
    example = copy_example(tmp_path / "credit")
    valid = (example / "requests" / "one_applicant.json").read_text()
    (example / "requests" / "bad_but_valid.json").write_text(valid)
    _, settings = stack.parse_args(running.argv("demo", example))
    with pytest.raises(stack.StackError, match=r"bad_but_valid\.json: expected a 4xx, got 200"):
        stack.demo(settings)


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def service_processes(running: Running) -> dict[str, list[psutil.Process]]:
    """The stack's children, each with every process of its group (gunicorn master + workers)."""
    groups: dict[str, list[psutil.Process]] = {}
    for child in psutil.Process(running.process.pid).children():
        name = "graph" if "graph-service" in " ".join(child.cmdline()) else "logic"
        groups[name] = [child, *child.children(recursive=True)]
    return groups


def test_graph_service_gets_the_grpc_port(running: Running) -> None:
    graph = service_processes(running)["graph"][0].cmdline()
    assert graph[graph.index("--port") + 1] == str(running.grpc_port)
    assert graph[graph.index("--rest_api_port") + 1] == str(running.graph_port)


def test_sigterm_stops_both_services_cleanly(running: Running) -> None:
    groups = service_processes(running)
    assert len(groups["logic"]) >= 2, "expected a gunicorn master and its worker"
    running.process.send_signal(signal.SIGTERM)
    assert running.process.wait(60) == 0, running.text()
    assert "stopped." in running.text()
    assert "killing" not in running.text()
    assert port_is_free(running.logic_port), "logic-service still holds its port"
    assert port_is_free(running.graph_port), "graph-service still holds its port"
    left = [p.pid for group in groups.values() for p in group if gone_or_zombie(p) is False]
    assert not left, f"processes outlived the stack: {left}"


def gone_or_zombie(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


# A service whose master exits on SIGTERM but leaves a worker that ignores it (a stuck worker).
STUBBORN_GROUP = """
import os, signal, subprocess, sys, time
worker = subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(600)"])
print(worker.pid, flush=True)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
time.sleep(600)
"""

# A service that takes 3 s to drain after SIGTERM, then exits 0.
SLOW_DRAIN = """
import signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: (time.sleep(3), sys.exit(0)))
print("ready", flush=True)
time.sleep(600)
"""


def wait_for_log(path: Path, text: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text():
            return path.read_text()
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not in {path}")


def stack_settings(tmp_path: Path, *extra: str) -> object:
    _, settings = stack.parse_args(offline_argv(EXAMPLE, tmp_path)[0:1] + list(extra))
    (tmp_path / "run").mkdir(exist_ok=True)
    return dataclasses.replace(settings, run_dir=tmp_path / "run")


def test_stop_kills_what_is_left_in_a_group_after_its_leader_exits(tmp_path: Path) -> None:
    settings = stack_settings(tmp_path)
    children: list = []
    child = stack.start(
        "stubborn",
        [sys.executable, "-c", STUBBORN_GROUP],
        settings,
        {},
        children=children,
        signals=stack.StopSignals(),
    )
    assert children == [child]
    text = wait_for_log(child.log_path, "ready")
    worker = psutil.Process(int(text.split()[0]))
    stack.stop(children, grace=10)
    assert child.process.returncode == 0
    worker_gone = gone_or_zombie(worker)
    if not worker_gone:
        worker.wait(5)  # reaped by init after the kill
    assert gone_or_zombie(worker), "the worker outlived its master"


def test_stop_waits_for_a_slow_drain_within_the_grace(tmp_path: Path, capsys) -> None:
    children: list = []
    child = stack.start(
        "slow",
        [sys.executable, "-c", SLOW_DRAIN],
        stack_settings(tmp_path),
        {},
        children=children,
        signals=stack.StopSignals(),
    )
    wait_for_log(child.log_path, "ready")
    started = time.monotonic()
    stack.stop(children, grace=10)
    assert child.process.returncode == 0, "killed instead of allowed to drain"
    assert time.monotonic() - started >= 2.5
    assert "killing" not in capsys.readouterr().out


def test_stop_grace_outlasts_the_logic_tiers_graceful_timeout(monkeypatch) -> None:
    monkeypatch.delenv("LOGIC_GRACEFUL_TIMEOUT", raising=False)
    assert stack.parse_args(["up"])[1].stop_grace == 30
    monkeypatch.setenv("LOGIC_GRACEFUL_TIMEOUT", "45")
    assert stack.parse_args(["up"])[1].stop_grace == 55
    assert stack.parse_args(["up", "--stop-grace", "7"])[1].stop_grace == 7


def test_a_signal_during_a_start_stops_after_the_child_is_recorded(
    tmp_path: Path, monkeypatch
) -> None:
    """SIGTERM between spawning a service and recording it: the child is recorded, then stopped."""
    signals = stack.StopSignals()
    real_popen = subprocess.Popen

    def popen_then_signal(*args, **kwargs):
        process = real_popen(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)  # lands before `start` has recorded the child
        return process

    monkeypatch.setattr(stack.subprocess, "Popen", popen_then_signal)
    previous = signal.signal(signal.SIGTERM, signals.handle)
    children: list = []
    try:
        with pytest.raises(stack.Shutdown):
            stack.start(
                "victim",
                [sys.executable, "-c", "import time; time.sleep(600)"],
                stack_settings(tmp_path),
                {},
                children=children,
                signals=signals,
            )
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert [child.name for child in children] == ["victim"]
    stack.stop(children, grace=10)
    assert children[0].process.returncode == -signal.SIGTERM


def offline_argv(example: Path, work: Path, logic_port: int | None = None) -> list[str]:
    """`demo` on fresh free ports with every output folder under `work`."""
    return [
        "demo",
        "--example-dir",
        str(example),
        "--run-dir",
        str(work / "run"),
        "--models-dir",
        str(work / "models"),
        "--logic-port",
        str(logic_port or free_port()),
        "--graph-port",
        str(free_port()),
    ]


def test_a_taken_port_is_refused_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = stack.main(offline_argv(EXAMPLE, tmp_path, logic_port=port))
    assert code == 1
    err = capsys.readouterr().err
    assert f"port {port} on 127.0.0.1 is already in use" in err
    assert "--logic-port" in err
    assert not (tmp_path / "run").exists()


def test_a_failed_step_names_its_log(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    example = copy_example(tmp_path / "credit")
    (example / "train.py").write_text(
        "import sys\nprint('no space left on device', file=sys.stderr)\nsys.exit(3)\n"
    )
    code = stack.main(offline_argv(example, tmp_path))
    assert code == 1
    err = capsys.readouterr().err
    assert "training the example failed with exit code 3" in err
    assert str(tmp_path / "run" / "train.log") in err
    assert "no space left on device" in err
    assert not (tmp_path / "models").exists()


def test_a_missing_pipeline_config_is_named(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = stack.main(offline_argv(tmp_path, tmp_path))
    assert code == 1
    assert f"{tmp_path / 'pipelines.yaml'} not found" in capsys.readouterr().err
