"""The logic tier's HTTP transport to the graph tier (TF Serving REST API).

Keep-alive connections in a small pool per worker process (a new pool after gunicorn's fork).
The connections are our own minimal HTTP/1.1 client (logic_service/graph/http_transport.py), not
`http.client`: measured per 1-row call in our process, `requests` costs ~700 us CPU, a urllib3
pool ~250 us, `http.client` ~150-175 us (two sendalls, a makefile reader and `email` header
parsing per call), this pool with its own connections ~65-75 us, 0.45x http.client
(benchmarks/bench_graph_client.py). Every call carries a timeout: connect from settings, read =
what the caller's deadline leaves. Retries are bounded and only where nothing was served: a
connect failure, or a kept-alive connection the graph server closed as we sent on it (one
retry on a fresh connection).
Every transport failure becomes 503 (unreachable), 504 (timeout) or 502 (refused or cut off),
and graph errors keep the graph's own text.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any

import orjson
from urllib3.util import parse_url

from logic_service.errors import (
    GraphRejectedError,
    GraphTimeoutError,
    GraphUnavailableError,
)
from logic_service.graph.address import validate_url
from logic_service.graph.http_transport import HTTPConnection, ProtocolError, ServerClosedError

log = logging.getLogger(__name__)

# A kept-alive connection idle this long is not reused: servers close idle connections
# (graph-service after 5 s, gunicorn's keepalive) and one closed as we send on it is a failure
# only a retry can hide. Below the graph tier's own keep-alive timeout, that race cannot happen.
IDLE_LIMIT = 4.0
# TF Serving's texts for a request that no longer fits the model's signature (a renamed input,
# another dtype, a missing signature): the only 400s after which re-reading the signature helps.
_CONTRACT_MARKERS = (
    "Missing named input",
    "not found in signature def",
    "is not of expected type",
    "input tensor alias not found",
    "Failed to get input map",
    "expecting an object as multiple input",
)


class GraphConnectError(GraphUnavailableError):
    """No connection could be made: counts against the target's breaker."""


class GraphCallTimeoutError(GraphTimeoutError):
    """The graph accepted the call but did not answer in the time given."""

    def __init__(self, message: str, allowed: float) -> None:
        super().__init__(message)
        self.allowed = allowed


class GraphBrokeOffError(GraphRejectedError):
    """The connection failed after the request was sent (reset, cut off, unreadable)."""


class GraphContractError(GraphRejectedError):
    """The graph refused the request because it no longer matches the cached signature."""


@dataclass(frozen=True)
class GraphResponse:
    status: int
    body: bytes


class GraphClient:
    """Talks to one graph tier address; safe to share between a worker's threads.

    A small LIFO pool of `HTTPConnection`s per process (a new pool after a fork): the
    cheapest client that still does timeouts, bounded retries and stale-connection handling
    (benchmarks/bench_graph_client.py). Before a pooled connection is reused it is
    polled: a connection the server has closed (FIN or RST pending) is dropped, not used.
    """

    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout: float = 2.0,
        read_timeout: float = 10.0,
        connect_retries: int = 2,
        pool_size: int = 16,
    ) -> None:
        self.base_url = validate_url(base_url)
        parsed = parse_url(self.base_url)
        self._https = parsed.scheme == "https"
        self._host = parsed.host or ""
        self._port = parsed.port or (443 if self._https else 80)
        # Loaded once per client (system CA store), not per connection.
        self._tls = ssl.create_default_context() if self._https else None
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.connect_retries = connect_retries
        self.pool_size = pool_size
        self._lock = threading.Lock()
        self._idle: list[tuple[HTTPConnection, float]] = []  # (conn, idle since)
        self._pid = os.getpid()

    def predict(
        self, path: str, body: bytes, *, request_id: str | None = None, timeout: float
    ) -> bytes:
        """POST a prepared `:predict` body; the raw response body, or a mapped LogicError."""
        response = self.call(
            "POST", f"{path}:predict", body=body, request_id=request_id, timeout=timeout
        )
        if response.status < 400:
            return response.body
        raise self._graph_error(response, path)

    def metadata(
        self, path: str, *, timeout: float, request_id: str | None = None
    ) -> dict[str, Any]:
        """`GET {path}/metadata` as a dict."""
        response = self.call("GET", f"{path}/metadata", request_id=request_id, timeout=timeout)
        if response.status >= 400:
            raise self._graph_error(response, path)
        return _json_object(response.body)

    def call(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        request_id: str | None = None,
        timeout: float,
    ) -> GraphResponse:
        """One HTTP exchange, reading for at most `timeout` seconds; failures mapped."""
        timeout = max(timeout, 0.001)
        attempt, dropped_retry = 0, False
        started = time.monotonic()
        while True:
            conn, reused = self._checkout(fresh=dropped_retry)
            try:
                if conn.sock is None:
                    self._connect(conn, min(self.connect_timeout, timeout))
                conn.sock.settimeout(timeout)
                status, data, reusable = conn.exchange(method, path, body, request_id)
            except _ConnectFailedError as failure:
                conn.close()
                left = timeout - (time.monotonic() - started)
                if attempt >= self.connect_retries or left <= 0.05 * (attempt + 1):
                    raise GraphConnectError(
                        f"graph tier unreachable at {self.base_url} "
                        f"({_reason(failure.cause)}, {attempt + 1} attempt(s)); is it running?"
                    ) from None
                attempt += 1
                time.sleep(0.05 * attempt)
                continue
            except TimeoutError:
                conn.close()
                raise GraphCallTimeoutError(
                    f"graph tier did not answer {method} {path} within {timeout:.3g}s",
                    allowed=timeout,
                ) from None
            except (ProtocolError, OSError) as error:
                conn.close()
                # A kept-alive connection the server closed as we sent (nothing was served):
                # once more on a new connection. Anything else, or twice: 502.
                if reused and not dropped_retry and isinstance(error, _DROPPED):
                    # Its idle siblings were most likely closed with it (same keep-alive
                    # expiry): drop them all and retry on a new connection, never on another
                    # pooled one.
                    dropped_retry = True
                    self._discard_idle()
                    log.info("graph connection dropped (%s); retrying once", _reason(error))
                    continue
                raise GraphBrokeOffError(
                    f"graph tier at {self.base_url} broke off {method} {path} ({_reason(error)})"
                ) from None
            self._checkin(conn, reusable)
            return GraphResponse(status, data)

    def _checkout(self, fresh: bool = False) -> tuple[HTTPConnection, bool]:
        """A pooled connection still open on the server's side (idle for less than
        IDLE_LIMIT, so the server is not about to close it), else a new one (unconnected)."""
        now = time.monotonic()
        with self._lock:
            if self._pid != os.getpid():  # forked: the parent's sockets are not ours
                self._idle, self._pid = [], os.getpid()
            while self._idle and not fresh:
                conn, since = self._idle.pop()
                if now - since < IDLE_LIMIT and conn.sock is not None and not _readable(conn.sock):
                    return conn, True
                conn.close()  # closed by the server, or about to be: never reuse it
        return HTTPConnection(self._host, self._port, tls_context=self._tls), False

    def _checkin(self, conn: HTTPConnection, reusable: bool) -> None:
        if not reusable or conn.sock is None:
            conn.close()
            return
        with self._lock:
            if len(self._idle) < self.pool_size and self._pid == os.getpid():
                self._idle.append((conn, time.monotonic()))
                return
        conn.close()

    def _discard_idle(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn, _ in idle:
            conn.close()

    @staticmethod
    def _connect(conn: HTTPConnection, timeout: float) -> None:
        try:
            conn.connect(timeout)  # TCP_NODELAY set; TLS handshake within the same timeout
        except OSError as error:  # refused, unreachable, DNS, connect timeout, TLS failure
            raise _ConnectFailedError(error) from None

    def _graph_error(self, response: GraphResponse, path: str) -> Exception:
        text = _error_text(response.body)
        status = response.status
        if status == 404:
            return GraphUnavailableError(
                f"graph model {path} is not available on {self.base_url}: {text}"
            )
        if status == 503:
            return GraphUnavailableError(f"graph tier unavailable: {text}")
        if status == 504:
            return GraphTimeoutError(f"graph tier timed out: {text}")
        message = f"graph tier refused the request ({status}): {text}"
        if status == 400 and any(marker in text for marker in _CONTRACT_MARKERS):
            return GraphContractError(message)
        return GraphRejectedError(message)


class _ConnectFailedError(Exception):
    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


# What a kept-alive connection closed by the server looks like when we use it: EOF before
# any status byte (ServerClosedError, a ConnectionResetError), a reset, or a broken pipe.
_DROPPED = (ServerClosedError, ConnectionResetError, BrokenPipeError)


def _readable(sock: socket.socket) -> bool:
    """An idle keep-alive socket with something to read has been closed (or spoilt)."""
    poller = select.poll()
    poller.register(sock, select.POLLIN | select.POLLERR | select.POLLHUP)
    return bool(poller.poll(0))


def _reason(error: BaseException) -> str:
    """The innermost cause's class and text, short: `ConnectionRefusedError: ...`."""
    inner: BaseException = error
    while inner.args and isinstance(inner.args[-1], BaseException):
        inner = inner.args[-1]
    text = str(inner).split(": ", 1)[-1][:120]
    return f"{type(inner).__name__}: {text}" if text else type(inner).__name__


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise GraphRejectedError(f"graph tier answered non-JSON: {body[:200]!r}") from None
    if not isinstance(payload, dict):
        raise GraphRejectedError(f"graph tier answered unexpected JSON: {body[:200]!r}")
    return payload


def _error_text(body: bytes) -> str:
    """TF Serving's `{"error": "..."}`, else the start of the body."""
    try:
        payload = orjson.loads(body)
        if isinstance(payload, dict) and "error" in payload:
            return str(payload["error"])
    except orjson.JSONDecodeError:
        pass
    return body[:300].decode("utf-8", "replace")
