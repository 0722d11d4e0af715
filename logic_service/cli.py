"""`logic-service`: start the logic tier under gunicorn with the checked-in gunicorn.conf.py.

The process becomes the gunicorn master itself (signals from dumb-init/Kubernetes reach it
directly). The app is preloaded in the master, so a bad pipeline file or artifact ends the
start with one readable line and exit code 2, before any worker forks.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from gunicorn.app.base import Application

from logic_service.errors import LogicError
from logic_service.settings import Settings

GUNICORN_CONF = Path(__file__).parent / "http" / "gunicorn.conf.py"
EXIT_CONFIG = 2


class _Server(Application):
    """gunicorn configured from our conf file plus command-line overrides, app from settings."""

    def __init__(self, settings: Settings, overrides: dict[str, Any]) -> None:
        self._settings = settings
        self._overrides = overrides
        super().__init__(prog="logic-service")

    def init(self, parser: Any, opts: Any, args: Any) -> None:
        return None

    def load_config(self) -> None:
        self.load_config_from_file(str(GUNICORN_CONF))
        for key, value in self._overrides.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from logic_service.app import create_app

        return create_app(self._settings)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="logic-service",
        description=(
            "Serve POST /get_score, /health, /ready, /pipelines, /openapi.json and /metrics for "
            "the pipelines declared in a YAML file, under gunicorn (logic_service/http/gunicorn.conf.py). "
            "Fitted scikit-learn transformers are compiled to ONNX at start-up and serve only "
            "after a parity check against scikit-learn (per pipeline engine: auto|onnx|sklearn)."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="""environment (docs/logic-service.md, Environment):
  LOGIC_CONFIG                 pipeline file when --config is not given
  GRAPH_SERVICE_URL            graph tier address with its scheme (http://graph:8501)
  LOGIC_WORKERS, LOGIC_THREADS gunicorn processes (2) and request threads per process (8)
  LOGIC_REQUEST_TIMEOUT        per-request budget in s (10); header X-Request-Timeout-Ms lowers it
  LOGIC_GRAPH_CONNECT_TIMEOUT, LOGIC_GRAPH_READ_TIMEOUT, LOGIC_GRAPH_RETRIES, LOGIC_GRAPH_POOL_SIZE,
  LOGIC_GRAPH_CONCURRENCY      the graph client (graph calls in flight per target and worker)
  LOGIC_BATCHING, LOGIC_MAX_BATCH_ROWS, LOGIC_MAX_BATCH_WAIT_MS   micro-batching into the graph
  LOGIC_BREAKER_FAILURES, LOGIC_BREAKER_RESET_SECONDS             circuit breaker per graph target
  LOGIC_OVERDUE_FACTOR, LOGIC_OVERDUE_FLOOR_MS, LOGIC_OVERDUE_MIN_CALLS
                               a graph call still in flight after max(FLOOR_MS (1000),
                               FACTOR (10; 0 = off) x p99 of the last 256 answered calls)
                               opens the breaker, once MIN_CALLS (20) have been answered
  LOGIC_ACCESS_LOG             gunicorn's access log: off (one JSON line per request is
                               written anyway); - writes it to stderr as well
  LOGIC_MAX_CONTENT_LENGTH, LOGIC_JSON_LOGS, LOGIC_GRACEFUL_TIMEOUT,
  LOGIC_WORKER_TIMEOUT, LOGIC_KEEPALIVE, LOGIC_LOG_LEVEL, PROMETHEUS_MULTIPROC_DIR
  LOGIC_KEEPALIVE_LINGER_MS    how long a request thread waits for its kept-alive
                               connection's next request before handing it back (5; 0 = off)
  LOGIC_PIN_WORKERS            auto|on|off: one CPU per worker (auto: when the workers cover
                               every CPU the service may use)
  LOGIC_TRAFFIC_POLL_SECONDS   how often each worker looks whether the pipeline file changed;
                               its traffic: blocks reload without a restart (2; 0 = SIGHUP only)
A bad value ends the start with one line and exit code 2.

compile ahead of time (see `logic-service compile --help`):
  logic-service compile --config FILE   convert each pipeline in the scikit-learn that pickled
                                        it and write compiled/NAME/; the service then serves
                                        those files without unpickling anything
  LOGIC_COMPILED_DIR           where compiled builds are read (default: compiled_dir of the
                               pipeline file, compiled/ next to it)

example:
  logic-service compile --config examples/credit/pipelines.yaml
  logic-service --config examples/credit/pipelines.yaml --bind 127.0.0.1:5000
  logic-service --config examples/credit/pipelines.yaml --check
""",
    )
    parser.add_argument(
        "--config", metavar="FILE", help="pipeline file (YAML); default: $LOGIC_CONFIG"
    )
    parser.add_argument(
        "--bind",
        metavar="HOST:PORT",
        default=os.environ.get("LOGIC_BIND", "0.0.0.0:5000"),
        help="address to listen on (default: $LOGIC_BIND or 0.0.0.0:5000)",
    )
    parser.add_argument(
        "--workers", type=_positive, help="worker processes (default: $LOGIC_WORKERS or 2)"
    )
    parser.add_argument(
        "--threads", type=_positive, help="threads per worker (default: $LOGIC_THREADS or 8)"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="load the pipeline file and every artifact, compile and parity-check each pipeline, "
        "print a summary (engine, parity max |diff|, rows checked), exit (no server)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["compile"]:
        from logic_service.compiler.command import main as compile_main

        return compile_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    config = args.config or os.environ.get("LOGIC_CONFIG")
    if not config:
        parser.error("no pipeline file: pass --config FILE or set LOGIC_CONFIG")
    try:
        settings = Settings.from_env(config_path=Path(config).resolve())
    except LogicError as error:
        print(f"logic-service: error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    if args.check:
        return _check(settings)
    overrides: dict[str, Any] = {"bind": [args.bind]}
    if args.workers:
        overrides["workers"] = args.workers
    if args.threads:
        overrides["threads"] = args.threads
    owned_metrics_dir = None
    master_pid = os.getpid()
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Ours for this run: removed however the server ends (also when the start is refused).
        owned_metrics_dir = tempfile.mkdtemp(prefix="logic-service-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = owned_metrics_dir
    try:
        _Server(settings, overrides).run()
    except LogicError as error:
        print(f"logic-service: error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    finally:
        # Forked workers unwind through here too (gunicorn ends them with sys.exit).
        if owned_metrics_dir and os.getpid() == master_pid:
            shutil.rmtree(owned_metrics_dir, ignore_errors=True)
    return 0


def _check(settings: Settings) -> int:
    from logic_service.app import EXTENSION, create_app
    from logic_service.pipeline.bundle import bundle_dir

    try:
        app = create_app(settings)
    except LogicError as error:
        print(f"logic-service: error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    state = app.extensions[EXTENSION]
    for pipeline in state.scorer.pipelines.values():
        info = pipeline.describe()
        target = info["model"].get("target") or f"sklearn {info['model']['method']}"
        print(f"{pipeline.name}: {len(info['columns'])} column(s) -> {target}")
        print(f"  engine: {engine_line(info['engine'])}")
        if pipeline.build is not None:
            built = pipeline.build.get("built_with", {})
            print(
                f"  build: {bundle_dir(state.config, pipeline.name)} "
                f"(scikit-learn {built.get('scikit-learn')}, built {pipeline.build.get('built_at')})"
            )
        if pipeline.self_test is not None:
            print(f"  self-test: {pipeline.self_test.line()}")
        for warning in info["warnings"]:
            print(f"  warning: {warning}")
    return 0


def engine_line(engine: dict[str, Any]) -> str:
    """`onnx (parity max |diff| 7.8e-08 on 18 rows, atol 1e-05)` or `sklearn (why)`."""
    if engine["name"] == "onnx":
        return (
            f"onnx (parity max |diff| {engine['parity_max_diff']:.2g} on "
            f"{engine['parity_rows']} rows, atol {engine['parity_atol']:g})"
        )
    return f"sklearn ({engine['reason']})"


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


if __name__ == "__main__":
    sys.exit(main())
