# ruff: noqa: N999 (gunicorn looks for this exact file name)
"""Gunicorn settings for the logic tier; `logic-service` and the container both use this file.

Also usable directly: `LOGIC_CONFIG=pipelines.yaml gunicorn -c logic_service/http/gunicorn.conf.py`.
Every value can be overridden from the environment (LOGIC_BIND, LOGIC_WORKERS, ...).
"""

import os
import shutil
import sys
import tempfile

from logic_service.http.gunicorn_check import gunicorn_problem, untested_version

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def _fail(message: str) -> None:
    """One line and exit 2, as for every other bad setting; gunicorn would print a traceback."""
    sys.stderr.write(f"logic-service: error: {message}\n")
    sys.exit(2)


def _whole(name: str, default: int, minimum: int, meaning: str) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or value < minimum:
        _fail(
            f"{name}={raw!r} must be a whole number >= {minimum} ({meaning}), e.g. {name}={default}"
        )
    return value


def _one_of(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = os.environ.get(name, default).strip().lower()
    if value not in choices:
        _fail(f"{name}={value!r} must be one of {', '.join(choices)}")
    return value


# The worker below builds on gthread's internals: refuse a gunicorn that lacks them now, in one
# line, rather than on the first request (logic_service/http/gunicorn_check.py).
_gunicorn_problem = gunicorn_problem()
if _gunicorn_problem:
    _fail(_gunicorn_problem)
_gunicorn_warning = untested_version()
if _gunicorn_warning:
    sys.stderr.write(f"logic-service: warning: {_gunicorn_warning}\n")

# Defaults from `make bench-logic` on a 2-core box: 2 processes (one per core) x 8 threads.
# A thread mostly waits on the graph tier, and the requests a process has in flight are what
# its batcher can join into one :predict: 8 threads gave larger batches than 4, so less CPU
# per request in both tiers (docs/benchmarks.md, Worker layout). More cores: LOGIC_WORKERS = cores.
bind = os.environ.get("LOGIC_BIND", "0.0.0.0:5000")
workers = _whole("LOGIC_WORKERS", 2, 1, "worker processes")
threads = _whole("LOGIC_THREADS", 8, 1, "request threads per worker")
# gthread plus reserved threads for GET /health and GET /ready, so probes never queue behind
# requests waiting on the graph tier, and a SIGTERM drain that refuses new connections.
worker_class = "logic_service.http.worker.ProbeLaneWorker"
# Load pipelines once in the master; workers share the artifacts' pages copy-on-write, and a
# broken artifact stops the start instead of crash-looping workers.
preload_app = True
wsgi_app = "logic_service.app:create_app()"
timeout = _whole("LOGIC_WORKER_TIMEOUT", 60, 0, "seconds before a silent worker is restarted")
# SIGTERM: requests already received get this long to finish; a supervisor must wait longer
# (scripts/stack.py waits graceful_timeout + 10 s; Kubernetes terminationGracePeriodSeconds).
graceful_timeout = _whole("LOGIC_GRACEFUL_TIMEOUT", 20, 0, "seconds a stopping worker drains")
keepalive = _whole("LOGIC_KEEPALIVE", 5, 0, "seconds an idle keep-alive connection stays open")
# After a response the request thread waits this long for the connection's next request and
# serves it itself, skipping the hand-over through the main loop (logic_service/http/worker.py).
_linger_ms = _whole(
    "LOGIC_KEEPALIVE_LINGER_MS", 5, 0, "ms a request thread waits for its connection's next request"
)
# One CPU per worker when the workers cover every CPU the service may use (logic_service/
# worker.py): a worker's threads then pass the GIL around on one core, not across cores.
_pin_workers = _one_of("LOGIC_PIN_WORKERS", "auto", ("auto", "on", "off"))
# gunicorn's access log is off by default: the JSON request line (request_log.py) already says
# who asked what, with status, id and stage timings, and a second line per request cost 8% of
# the tier's CPU (benchmarks/bench_logic.py). LOGIC_ACCESS_LOG=- writes it to stderr as well.
accesslog = os.environ.get("LOGIC_ACCESS_LOG", "") or None
errorlog = "-"
# No runtime control socket: several instances share a host in tests and the container's
# filesystem is read-only for the service user.
control_socket_disable = True
loglevel = _one_of("LOGIC_LOG_LEVEL", "info", LOG_LEVELS)
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms id=%({x-request-id}o)s'

# Prometheus multiprocess mode: the directory must exist, be empty, and be in the environment
# before prometheus_client is first imported (that happens when the app is preloaded).
_metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
_created_metrics_dir = not _metrics_dir
if _created_metrics_dir:
    _metrics_dir = tempfile.mkdtemp(prefix="logic-service-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir
os.makedirs(_metrics_dir, exist_ok=True)
for _name in os.listdir(_metrics_dir):
    if _name.endswith(".db"):
        os.unlink(os.path.join(_metrics_dir, _name))


def on_starting(server):
    """SIGHUP reloads the pipeline file's traffic blocks in place instead of re-forking the
    workers from the app the master built at start (logic_service/traffic/reload.py)."""
    from logic_service.app import traffic_reloader
    from logic_service.traffic.reload import take_over_sighup

    take_over_sighup(server, traffic_reloader(server.app.wsgi()))


def pre_fork(server, worker):
    """Choose the new worker's CPU in the master, which knows where the live workers run."""
    from logic_service.http.worker import choose_cpu, pins_workers

    if not hasattr(os, "sched_getaffinity"):  # Linux only; elsewhere workers are not pinned
        return
    allowed = os.sched_getaffinity(0)
    if pins_workers(_pin_workers, server.num_workers, len(allowed)):
        taken = [w.cpu for w in server.WORKERS.values() if getattr(w, "cpu", None) is not None]
        worker.cpu = choose_cpu(allowed, taken)


def post_fork(server, worker):
    """Hand the worker the settings gunicorn itself has no name for."""
    worker.linger = _linger_ms / 1000


def post_worker_init(worker):
    """Follow traffic reloads (SIGHUP, the file changing) and open this worker's onnxruntime
    sessions before its first request (never in the master)."""
    from logic_service.app import traffic_reloader, warm_up

    app = worker.app.wsgi()  # the Flask app itself (the worker wraps worker.wsgi)
    traffic_reloader(app).follow(master_pid=worker.ppid)
    warm_up(app)


def worker_exit(server, worker):
    """Leave the worker through os._exit with the exit code gunicorn chose: onnxruntime, imported
    by the preloaded app in the master, is not fork-safe at interpreter exit (a forked child
    hangs or aborts in its C++ destructors), so a normal exit would hang each worker until the
    graceful timeout killed it, and a worker that failed to boot would never report it."""
    import logging

    exiting = sys.exc_info()[1]  # gunicorn calls this hook while its sys.exit(code) unwinds
    code = exiting.code if isinstance(exiting, SystemExit) else 0
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code if isinstance(code, int) else 1)


def child_exit(server, worker):
    """Drop a dead worker's live-gauge files so /metrics does not report it."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    """Remove the metrics directory we created ourselves."""
    if _created_metrics_dir:
        shutil.rmtree(_metrics_dir, ignore_errors=True)
