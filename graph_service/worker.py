"""graph-service's gunicorn worker: it opens the REST port itself, once the models are loaded.

What it replaces: gunicorn's master binds the listening socket before it forks the worker,
and the worker can only load the models after the fork (TensorFlow's thread pools do not
survive one). So the kernel accepted connections for the whole load, and callers waited or
timed out on a port that could not answer yet. TF Serving opens its ports only once the
models in its config have loaded; so does graph-service now: the master binds nothing
(`server.py` passes an empty `bind`) and this worker binds the REST port after `load_wsgi`
has loaded every model and started gRPC. Until then a connect is refused (ECONNREFUSED),
which a client sees at once and may retry, during a first start, a restart, or the master
forking a new worker after one died. When a graceful stop begins the port is closed at
once, not after the drain, so new connections are refused instead of queued and then reset.

Everything else is gunicorn's gthread worker: bounded request threads, keep-alive, the
graceful drain of accepted requests on SIGTERM. It relies on `ThreadWorker.run` registering
`self.sockets` when it starts and calling `set_accept_enabled(False)` when its loop ends
(gunicorn 24 and later; pyproject's range is the one the tests ran).
"""

from __future__ import annotations

import os

from gunicorn.config import Config
from gunicorn.errors import AppImportError
from gunicorn.glogging import Logger
from gunicorn.sock import TCP6Socket, TCPSocket
from gunicorn.util import is_ipv6
from gunicorn.workers.gthread import ThreadWorker

from graph_service.ports import rest_port_error


class LoadedFirstWorker(ThreadWorker):
    """gthread worker whose app (`GraphServer`) gives `rest_address`, bound after the load."""

    def run(self) -> None:
        # A SIGTERM that arrived during the load: stop without ever listening.
        if self.alive:
            host, port = self.app.rest_address
            self.sockets = [open_listener(host, port, self.cfg, self.log)]
        super().run()

    def set_accept_enabled(self, enabled: bool) -> None:
        super().set_accept_enabled(enabled)
        if not enabled and not self.alive:
            # Stopping (the loop has ended): new connections are refused from now on, while
            # the requests already accepted drain. gthread itself closes the port only at exit.
            for listener in self.sockets:
                listener.close()


def open_listener(host: str, port: int, cfg: Config, log: Logger) -> TCPSocket:
    """A listening socket with gunicorn's options (SO_REUSEADDR, TCP_NODELAY, backlog).

    A port that cannot be bound ends the worker as a failed app load: gunicorn's master
    prints this one line and exits 4 instead of forking the worker again.
    """
    sock_type = TCP6Socket if is_ipv6(host) else TCPSocket
    try:
        listener = sock_type((host, port), cfg, log)
    except OSError as error:
        raise AppImportError(f"graph-service: {rest_port_error(f'{host}:{port}', error)}") from None
    log.info("Listening at: %s (%s), every model loaded", listener, os.getpid())
    return listener
