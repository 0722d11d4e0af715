"""Serve the WSGI app with gunicorn: one worker process, a pool of threads.

One worker so every model is loaded once; threads because TensorFlow releases the GIL while
a graph runs, so concurrent requests overlap. gunicorn rather than werkzeug's development
server for bounded threads, keep-alive, a graceful SIGTERM and a new worker should one die.
Models load in the worker (after the fork: TensorFlow's thread pools do not survive one).

Start-up order, as TF Serving's: the master checks that both ports are free and binds
neither; the worker loads every model, starts gRPC, then opens the REST port
(`graph_service.worker`). Until then both ports refuse connections.
"""

from __future__ import annotations

import logging
import signal
import sys

from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.errors import AppImportError

from graph_service.bootstrap import Service, StartupError, build_service
from graph_service.ports import check_ports_free
from graph_service.settings import Settings
from graph_service.worker import LoadedFirstWorker

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class GraphServer(BaseApplication):
    """gunicorn application whose worker builds the service from `settings`."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._service: Service | None = None  # set in the worker, after the fork
        # Bound by the worker once the models are loaded (LoadedFirstWorker), not the master.
        self.rest_address = (settings.rest_api_host, settings.rest_api_port)
        super().__init__()

    def load_config(self) -> None:
        settings = self._settings
        options = {
            "bind": [],  # the master listens on nothing: see graph_service.worker
            "workers": 1,
            "worker_class": LoadedFirstWorker,
            "threads": settings.rest_api_num_threads,
            # Loading models can take longer than any heartbeat timeout; gthread's heartbeat
            # runs beside the request threads, so a slow model call never trips it either.
            "timeout": 0,
            "graceful_timeout": 10,
            "keepalive": 5,
            "loglevel": settings.log_level.lower(),
            "accesslog": None,
            "proc_name": "graph-service",
            # Several services may run side by side (tests, stacks): no shared control socket.
            "control_socket_disable": True,
            "on_starting": _quiet_master_listening,
            # gRPC runs in the worker beside REST: it refuses new calls at SIGTERM; at exit,
            # after gunicorn has drained REST, gRPC closes first, then watcher and pools.
            "post_worker_init": self._on_worker_ready,
            "worker_exit": self._worker_exit,
        }
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self):
        logging.basicConfig(level=self._settings.log_level, format=LOG_FORMAT, stream=sys.stderr)
        try:
            self._service = build_service(self._settings)
        except StartupError as exc:
            # gunicorn prints this message and stops the master (exit code 4), no retry loop.
            raise AppImportError(f"graph-service: {exc}") from None
        return self._service.app

    def _on_worker_ready(self, worker) -> None:
        """Chain onto the worker's SIGTERM: gRPC stops taking calls while REST drains."""
        service = self._service
        if service is None or service.grpc is None:
            return
        gunicorn_handler = signal.getsignal(signal.SIGTERM)
        grpc_server = service.grpc

        def on_sigterm(signum, frame):
            grpc_server.stop()
            if callable(gunicorn_handler):
                gunicorn_handler(signum, frame)

        signal.signal(signal.SIGTERM, on_sigterm)

    def _worker_exit(self, server: object, worker: object) -> None:
        if self._service is not None:
            self._service.close()


def _quiet_master_listening(arbiter: Arbiter) -> None:
    """Drop the master's "Listening at:" line: it binds nothing (the worker logs its own)."""
    arbiter.log.error_log.addFilter(_NotMasterListening())


class _NotMasterListening(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.msg == "Listening at: %s (%s)" and record.args and not record.args[0])


def serve(settings: Settings) -> None:
    """Run until SIGTERM/SIGINT; StartupError (exit 4) at once if a port is taken."""
    check_ports_free(settings)
    GraphServer(settings).run()
