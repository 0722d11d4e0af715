"""Run both tiers on this machine without Docker, from the same files docker compose uses.

`up`   trains the example if its artifacts are missing, converts model.h5 into models/,
       compiles the pipelines (`logic-service compile`, when a build is missing or stale), starts
       graph-service and logic-service (gunicorn), waits for /ready, prints a curl to try and
       serves until Ctrl-C (or SIGTERM), then stops both, logic tier first.
`demo` does the same start, posts every request in the example's requests/ folder, prints the
       answers and stops; it exits 1 if a request is not answered as expected
       (files named bad_*.json must be refused with a 4xx, the others scored).

Models go to ./models (models/models.config is what compose mounts at /models), logs to ./run.
graph-service gets the REST port and the gRPC port (--port, as TF Serving's flags).

Stopping: SIGTERM goes to each service's whole process group (gunicorn master and workers),
logic tier first so its drain still reaches a live graph tier; a group still running after
the stop grace (gunicorn's graceful timeout + 10 s) is killed. A Ctrl-C/SIGTERM that arrives
while a service is being started takes effect once the child is recorded, so none is orphaned.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import requests
import yaml

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
# gunicorn's graceful timeout (logic_service/http/gunicorn.conf.py) plus margin to exit.
DEFAULT_GRACEFUL_TIMEOUT = 20
STOP_MARGIN_SECONDS = 10
LOG_TAIL_LINES = 25
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StackError(Exception):
    """Something did not come up; the message is the one line the user sees."""


class Shutdown(Exception):  # noqa: N818 - a request, not an error
    """Ctrl-C or SIGTERM arrived: stop the children, then exit 0."""


@dataclass(frozen=True)
class Settings:
    """Where everything lives and which ports the two tiers use."""

    example_dir: Path
    models_dir: Path
    run_dir: Path
    host: str
    graph_port: int
    grpc_port: int
    logic_port: int
    timeout: float
    config_poll_seconds: int
    stop_grace: float

    @property
    def pipelines(self) -> Path:
        return self.example_dir / "pipelines.yaml"

    @property
    def model_h5(self) -> Path:
        return self.example_dir / "artifacts" / "model.h5"

    @property
    def models_config(self) -> Path:
        return self.models_dir / "models.config"

    @property
    def graph_url(self) -> str:
        return f"http://{self.host}:{self.graph_port}"

    @property
    def logic_url(self) -> str:
        return f"http://{self.host}:{self.logic_port}"


@dataclass
class Child:
    """One started server process and the file its output goes to."""

    name: str
    process: subprocess.Popen
    log_path: Path

    def tail(self) -> str:
        return tail(self.log_path)


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    if not path.exists():
        return f"(no log at {path})"
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return "\n".join(f"  | {line}" for line in text)


def script(name: str) -> str:
    """A console script of the running environment (make runs .venv/bin/python)."""
    path = BIN / name
    if not path.exists():
        raise StackError(
            f"{name} not found in {BIN}; run `make up` (it installs .venv) or use .venv/bin/python"
        )
    return str(path)


def check_port_free(host: str, port: int, flag: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            raise StackError(
                f"port {port} on {host} is already in use (another `make up`?); stop it or pass {flag}"
            ) from None


def read_model_name(pipelines: Path) -> str:
    """The graph model the default pipeline scores with: the one to convert and wait for."""
    if not pipelines.exists():
        raise StackError(f"{pipelines} not found; pass --example-dir pointing at examples/credit")
    try:
        config = yaml.safe_load(pipelines.read_text())
        return str(config["pipelines"][config["default"]]["graph_model"])
    except (yaml.YAMLError, KeyError, TypeError) as exc:
        raise StackError(
            f"{pipelines}: expected default: NAME and pipelines.NAME.graph_model ({exc!r})"
        ) from None


def run_step(what: str, argv: Sequence[str], log_path: Path) -> None:
    """Run a one-shot command (training, conversion) with its output in a log file."""
    print(f"{what} ... (log: {log_path})", flush=True)
    with log_path.open("wb") as log:
        result = subprocess.run(list(argv), stdout=log, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        raise StackError(
            f"{what} failed with exit code {result.returncode}; last lines of {log_path}:\n"
            + tail(log_path)
        )


def ensure_artifacts(settings: Settings) -> None:
    transformer = settings.model_h5.with_name("transformer.pkl")
    if settings.model_h5.exists() and transformer.exists():
        return
    train = settings.example_dir / "train.py"
    if not train.exists():
        raise StackError(f"{settings.model_h5} is missing and there is no {train} to make it")
    run_step(
        "training the example",
        [sys.executable, str(train), "--out", str(settings.model_h5.parent)],
        settings.run_dir / "train.log",
    )


def needs_conversion(settings: Settings, name: str) -> bool:
    """Convert when models.config lacks the model or model.h5 is newer than its last version."""
    from converters.errors import ModelsConfigError
    from converters.models_config import ModelsConfig, list_versions, resolve_base_path

    try:
        entry = ModelsConfig.load(settings.models_config, missing_ok=True).get(name)
    except ModelsConfigError as exc:
        raise StackError(str(exc)) from None
    if entry is None:
        return True
    model_dir = resolve_base_path(entry.base_path, settings.models_dir)
    versions = list_versions(model_dir)
    if not versions:
        return True
    newest = model_dir / str(versions[-1])
    return settings.model_h5.stat().st_mtime > newest.stat().st_mtime


def ensure_converted(settings: Settings, name: str) -> None:
    if not needs_conversion(settings, name):
        return
    run_step(
        f"converting {settings.model_h5.name} into {settings.models_dir}/{name}",
        [
            script("convert-h5"),
            str(settings.model_h5),
            "--name",
            name,
            "--models-dir",
            str(settings.models_dir),
        ],
        settings.run_dir / "convert.log",
    )


def needs_compiling(settings: Settings) -> bool:
    """Compile when a pipeline has no build, or its build no longer matches its sources."""
    from logic_service.config import load_config
    from logic_service.errors import LogicError
    from logic_service.pipeline.bundle import REPORT, bundle_dir, check_fresh, read_bundle

    try:
        config = load_config(settings.pipelines)
        for spec in config.pipelines.values():
            if not spec.compilable:
                continue
            folder = bundle_dir(config, spec.name)
            if not (folder / REPORT).is_file():
                return True
            check_fresh(read_bundle(folder), spec, config)
    except LogicError:
        return True
    return False


def ensure_compiled(settings: Settings) -> None:
    if not needs_compiling(settings):
        return
    run_step(
        f"compiling the pipelines of {display(settings.pipelines)}",
        [script("logic-service"), "compile", "--config", str(settings.pipelines)],
        settings.run_dir / "compile.log",
    )


class StopSignals:
    """Ctrl-C/SIGTERM handling that never interrupts a start between spawn and record.

    Outside `deferred()` the handler raises Shutdown wherever the main code is (waits,
    training); inside it the handler only notes the signal, and Shutdown is raised when the
    block ends, after the started child is in the list `stop` walks.
    """

    def __init__(self) -> None:
        self.requested = False
        self._deferring = False

    def handle(self, _signum: int, _frame: FrameType | None) -> None:
        self.requested = True
        if not self._deferring:
            raise Shutdown

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False
        if self.requested:
            raise Shutdown


def start(
    name: str,
    argv: Sequence[str],
    settings: Settings,
    env: dict[str, str],
    *,
    children: list[Child],
    signals: StopSignals,
) -> Child:
    """Start a service in its own process group and record it in `children` at once."""
    log_path = settings.run_dir / f"{name}.log"
    with signals.deferred(), log_path.open("wb") as log:
        # Own process group: Ctrl-C reaches only this script, which then stops the children
        # in order, and `stop` can signal a service with all the processes it forked.
        process = subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
            process_group=0,
        )
        child = Child(name, process, log_path)
        children.append(child)
    return child


def wait_until(child: Child, url: str, ready: Callable[[requests.Response], bool], timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.process.poll() is not None:
            raise StackError(
                f"{child.name} exited with code {child.process.returncode} before it was ready; "
                f"last lines of {child.log_path}:\n{child.tail()}"
            )
        try:
            if ready(requests.get(url, timeout=2)):
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise StackError(
        f"{child.name} was not ready at {url} within {timeout:.0f}s; "
        f"last lines of {child.log_path}:\n{child.tail()}"
    )


def model_available(response: requests.Response) -> bool:
    """TF Serving's readiness: the status lists a version whose state is AVAILABLE."""
    if response.status_code != 200:
        return False
    statuses = response.json().get("model_version_status", [])
    return any(status.get("state") == "AVAILABLE" for status in statuses)


def start_stack(settings: Settings, name: str, children: list[Child], signals: StopSignals) -> None:
    """Start graph then logic, appending each to `children` so the caller can always stop them."""
    graph = start(
        "graph",
        [
            script("graph-service"),
            "--model_config_file",
            str(settings.models_config),
            "--rest_api_port",
            str(settings.graph_port),
            "--port",
            str(settings.grpc_port),
            "--model_config_file_poll_wait_seconds",
            str(settings.config_poll_seconds),
            # As the production image (graph_service/Dockerfile): a label may name a version
            # that is still loading.
            "--allow_version_labels_for_unavailable_models",
        ],
        settings,
        {"TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0"},
        children=children,
        signals=signals,
    )
    print(f"starting graph-service on {settings.graph_url} (log: {graph.log_path})", flush=True)
    wait_until(graph, f"{settings.graph_url}/v1/models/{name}", model_available, settings.timeout)

    logic = start(
        "logic",
        [
            script("logic-service"),
            "--config",
            str(settings.pipelines),
            "--bind",
            f"{settings.host}:{settings.logic_port}",
        ],
        settings,
        {"GRAPH_SERVICE_URL": settings.graph_url},
        children=children,
        signals=signals,
    )
    print(f"starting logic-service on {settings.logic_url} (log: {logic.log_path})", flush=True)
    wait_until(
        logic, f"{settings.logic_url}/ready", lambda r: r.status_code == 200, settings.timeout
    )


def signal_group(child: Child, sig: int) -> bool:
    """Send `sig` to the child's whole process group; False when the group is gone."""
    try:
        os.killpg(child.process.pid, sig)
    except ProcessLookupError:
        return False
    return True


def stop(children: list[Child], grace: float) -> None:
    """SIGTERM the logic tier's group first (it drains against a live graph), then the graph's.

    A group still running `grace` seconds later is killed, and so is anything left in it
    after its leader exited (a worker whose master died), so no process outlives `stop`.
    """
    for child in reversed(children):
        signal_group(child, signal.SIGTERM)
        try:
            child.process.wait(grace)
        except subprocess.TimeoutExpired:
            print(
                f"{child.name} did not stop within {grace:.0f}s of SIGTERM; killing it", flush=True
            )
            child.process.kill()
            child.process.wait()
        if signal_group(child, signal.SIGKILL):
            print(f"{child.name}: killed processes left in its group", flush=True)


def request_files(settings: Settings) -> list[Path]:
    return sorted((settings.example_dir / "requests").glob("*.json"))


def curl_hint(settings: Settings) -> str:
    files = [f for f in request_files(settings) if not f.name.startswith("bad_")]
    body = f"@{display(files[0])}" if files else "'{\"data\": [...]}'"
    return (
        f"curl -s -X POST {settings.logic_url}/get_score "
        f"-H 'Content-Type: application/json' -d {body}"
    )


def display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def serve(children: list[Child], settings: Settings) -> None:
    print(f"\nready. Try:\n  {curl_hint(settings)}\nCtrl-C stops both services.", flush=True)
    while True:
        for child in children:
            if child.process.poll() is not None:
                raise StackError(
                    f"{child.name} exited with code {child.process.returncode}; "
                    f"last lines of {child.log_path}:\n{child.tail()}"
                )
        time.sleep(0.5)


def demo(settings: Settings) -> None:
    """Score every sample request; bad_*.json must be refused with a 4xx, the rest scored."""
    failures = []
    for path in request_files(settings):
        body = json.loads(path.read_text())
        response = requests.post(f"{settings.logic_url}/get_score", json=body, timeout=30)
        print(f"\nPOST /get_score  {display(path)}  ({len(body.get('data', []))} record(s))")
        print(f"  -> HTTP {response.status_code} {response.text.strip()}")
        if path.name.startswith("bad_"):
            if not 400 <= response.status_code < 500:
                failures.append(f"{path.name}: expected a 4xx, got {response.status_code}")
        elif response.status_code != 200 or len(response.json().get("data", [])) != len(
            body["data"]
        ):
            failures.append(f"{path.name}: expected 200 with one score per record")
    if not request_files(settings):
        failures.append(f"no sample requests in {settings.example_dir / 'requests'}")
    if failures:
        raise StackError("demo requests not answered as expected: " + "; ".join(failures))


def run(command: str, settings: Settings) -> int:
    check_port_free(settings.host, settings.graph_port, "--graph-port")
    check_port_free(settings.host, settings.grpc_port, "--grpc-port")
    check_port_free(settings.host, settings.logic_port, "--logic-port")
    name = read_model_name(settings.pipelines)
    settings.run_dir.mkdir(parents=True, exist_ok=True)

    children: list[Child] = []
    signals = StopSignals()
    # Explicit handlers: a shell starting us in the background hands SIGINT down as ignored.
    previous = {sig: signal.signal(sig, signals.handle) for sig in STOP_SIGNALS}
    try:
        ensure_artifacts(settings)
        ensure_converted(settings, name)
        ensure_compiled(settings)
        start_stack(settings, name, children, signals)
        if command == "demo":
            demo(settings)
        else:
            serve(children, settings)
    except (KeyboardInterrupt, Shutdown):
        print("\nstopping ...", flush=True)
    finally:
        # A second Ctrl-C/SIGTERM must not cut the shutdown short and orphan a child.
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        try:
            stop(children, settings.stop_grace)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    print("stopped.", flush=True)
    return 0


def parse_args(argv: Sequence[str] | None) -> tuple[str, Settings]:
    parser = argparse.ArgumentParser(
        prog="stack.py",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=["up", "demo"])
    parser.add_argument("--example-dir", type=Path, default=ROOT / "examples" / "credit")
    parser.add_argument("--models-dir", type=Path, default=ROOT / "models")
    parser.add_argument("--run-dir", type=Path, default=ROOT / "run", help="logs go here")
    parser.add_argument("--host", default="127.0.0.1", help="address both services bind")
    parser.add_argument("--graph-port", type=int, default=8501, help="graph REST port")
    parser.add_argument(
        "--grpc-port", type=int, default=8500, help="graph gRPC port (graph-service --port)"
    )
    parser.add_argument("--logic-port", type=int, default=5000, help="logic service port")
    parser.add_argument(
        "--timeout", type=float, default=180, help="seconds each service may take to be ready"
    )
    parser.add_argument(
        "--config-poll-seconds",
        type=int,
        default=10,
        help="how often graph-service re-reads models.config (new versions, labels)",
    )
    parser.add_argument(
        "--stop-grace",
        type=float,
        help="seconds each service may take to stop before it is killed "
        "(default: $LOGIC_GRACEFUL_TIMEOUT or 20, plus 10)",
    )
    args = parser.parse_args(argv)
    stop_grace = args.stop_grace
    if stop_grace is None:
        try:
            graceful = float(os.environ.get("LOGIC_GRACEFUL_TIMEOUT") or DEFAULT_GRACEFUL_TIMEOUT)
        except ValueError:
            parser.error("LOGIC_GRACEFUL_TIMEOUT must be a number of seconds")
        stop_grace = graceful + STOP_MARGIN_SECONDS
    return args.command, Settings(
        example_dir=args.example_dir.resolve(),
        models_dir=args.models_dir.resolve(),
        run_dir=args.run_dir.resolve(),
        host=args.host,
        graph_port=args.graph_port,
        grpc_port=args.grpc_port,
        logic_port=args.logic_port,
        timeout=args.timeout,
        config_poll_seconds=args.config_poll_seconds,
        stop_grace=stop_grace,
    )


def main(argv: Sequence[str] | None = None) -> int:
    command, settings = parse_args(argv)
    try:
        return run(command, settings)
    except StackError as exc:
        print(f"stack.py {command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))  # converters/ when run from a plain checkout
    sys.exit(main())
