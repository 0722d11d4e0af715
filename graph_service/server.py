"""Serve the WSGI app with gunicorn: one worker process, a pool of threads.

One worker so every model is loaded once; threads because TensorFlow releases the GIL while
a graph runs, so concurrent requests overlap. gunicorn rather than werkzeug's development
server for bounded threads, keep-alive and a graceful SIGTERM. Models load in the worker
(after the fork: TensorFlow's thread pools do not survive one).
"""

from __future__ import annotations

import logging
import signal
import sys

from gunicorn.app.base import BaseApplication
from gunicorn.errors import AppImportError

from graph_service.bootstrap import Service, StartupError, build_service
from graph_service.settings import Settings

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class GraphServer(BaseApplication):
    """gunicorn application whose worker builds the service from `settings`."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._service: Service | None = None  # set in the worker, after the fork
        super().__init__()

    def load_config(self) -> None:
        settings = self._settings
        options = {
            "bind": f"{settings.rest_api_host}:{settings.rest_api_port}",
            "workers": 1,
            "worker_class": "gthread",
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


def serve(settings: Settings) -> None:
    """Run until SIGTERM/SIGINT."""
    GraphServer(settings).run()
