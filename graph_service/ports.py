"""The two ports graph-service listens on: a taken port is found before the models load.

Both ports open only once every configured model has loaded (REST in `graph_service.worker`,
gRPC in `graph_service.grpc.server`), which can take minutes for a large model. So that a
port another server holds does not cost that wait, `check_ports_free` binds each port once at
start, without listening (no connection can reach it meanwhile), and lets it go. A server
that takes a port in between is still caught, after the load, by the real bind. Both paths
print the same one line and exit 4.
"""

from __future__ import annotations

import errno
import socket

from gunicorn.util import is_ipv6

from graph_service.bootstrap import StartupError
from graph_service.settings import Settings


def rest_port_error(address: str, error: OSError) -> str:
    """The one-line error for a REST port that cannot be opened, naming the fix."""
    if error.errno == errno.EADDRINUSE:
        fix = "is another server on it? Pass --rest_api_port=N for another port"
    else:
        fix = "check --rest_api_host and --rest_api_port"
    return f"cannot open the REST port {address} ({_reason(error)}); {fix}"


def grpc_port_error(address: str, reason: object | None = None) -> str:
    """The one-line error for a gRPC port that cannot be opened, naming the fix."""
    why = f" ({reason})" if reason else ""
    return (
        f"cannot open the gRPC port {address}{why}; is another server on it? "
        "Pass --port=N for another port or --port=0 to serve REST only"
    )


def check_ports_free(settings: Settings) -> None:
    """StartupError (exit 4) when the REST or gRPC port cannot be bound right now."""
    host = settings.rest_api_host
    error = _bind_error(host, settings.rest_api_port)
    if error is not None:
        raise StartupError(rest_port_error(f"{host}:{settings.rest_api_port}", error))
    if settings.grpc_port:
        error = _bind_error(host, settings.grpc_port)
        if error is not None:
            raise StartupError(grpc_port_error(f"{host}:{settings.grpc_port}", _reason(error)))


def _bind_error(host: str, port: int) -> OSError | None:
    """Why (host, port) cannot be bound now, or None. With SO_REUSEADDR, as both servers
    bind, so a previous run's connections in TIME_WAIT do not count: only a bound socket."""
    family = socket.AF_INET6 if is_ipv6(host) else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            return error
    return None


def _reason(error: OSError) -> str:
    return f"{type(error).__name__}: {error.strerror or error}"
