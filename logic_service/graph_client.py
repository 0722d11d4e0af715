"""The logic tier's HTTP transport to the graph tier (TF Serving REST API).

A bare urllib3 connection pool per worker process (created lazily after gunicorn's fork: a
pool is never shared across one), chosen over `requests` by CPU per call
(benchmarks/bench_graph_client.py). Every call carries a timeout: connect from settings, read
= what the caller's deadline leaves. Retries are bounded and only where the request cannot
have been served twice to any effect: a connect failure, or a kept-alive connection the graph
server had already closed (one retry on a fresh connection; `:predict` is a pure function).
Every transport failure becomes 503 (unreachable), 504 (timeout) or 502 (refused or cut off),
and graph errors keep the graph's own text.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

import orjson
import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)
from urllib3.util import parse_url

from logic_service.errors import (
    ConfigError,
    GraphRejectedError,
    GraphTimeoutError,
    GraphUnavailableError,
)

log = logging.getLogger(__name__)

_JSON = {"Content-Type": "application/json"}
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


class GraphContractError(GraphRejectedError):
    """The graph refused the request because it no longer matches the cached signature."""


@dataclass(frozen=True)
class GraphResponse:
    status: int
    body: bytes


def validate_url(url: str, where: str = "GRAPH_SERVICE_URL") -> str:
    """`http(s)://host[:port]`; a ConfigError naming the fix otherwise (`graph:8501`)."""
    try:
        parsed = parse_url(url)
    except ValueError:
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigError(
            f"{where}={url!r} is not an http(s) URL: write it with its scheme, "
            f"e.g. http://{url.rsplit('://', maxsplit=1)[-1].rstrip('/') or 'graph:8501'}"
        )
    if parsed.path not in (None, "", "/"):
        raise ConfigError(f"{where}={url!r}: give only scheme, host and port (no path)")
    return url.rstrip("/")


class GraphClient:
    """Talks to one graph tier address; safe to share between a worker's threads."""

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
        self._scheme, self._host = parsed.scheme or "http", parsed.host or ""
        self._port = parsed.port or (443 if self._scheme == "https" else 80)
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.connect_retries = connect_retries
        self.pool_size = pool_size
        self._lock = threading.Lock()
        self._pool: urllib3.HTTPConnectionPool | None = None
        self._pool_pid: int | None = None

    def pool(self) -> urllib3.HTTPConnectionPool:
        """This process's keep-alive pool (a new one after a fork)."""
        pid = os.getpid()
        if self._pool is None or self._pool_pid != pid:
            with self._lock:
                if self._pool is None or self._pool_pid != pid:
                    cls = (
                        urllib3.HTTPSConnectionPool
                        if self._scheme == "https"
                        else urllib3.HTTPConnectionPool
                    )
                    self._pool = cls(
                        self._host, self._port, maxsize=self.pool_size, block=False, retries=False
                    )
                    self._pool_pid = pid
        return self._pool

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
        """One HTTP exchange within `timeout` seconds of reading; transport failures mapped."""
        headers = dict(_JSON) if body is not None else {}
        if request_id:
            headers["X-Request-ID"] = request_id
        timeout = max(timeout, 0.001)
        limit = urllib3.Timeout(connect=min(self.connect_timeout, timeout), read=timeout)
        attempt, dropped_retry = 0, False
        started = time.monotonic()
        while True:
            try:
                response = self.pool().urlopen(
                    method,
                    path,
                    body=body,
                    headers=headers,
                    timeout=limit,
                    retries=False,
                    redirect=False,
                    assert_same_host=False,
                    preload_content=True,
                )
                return GraphResponse(response.status, response.data)
            except ReadTimeoutError:
                raise GraphCallTimeoutError(
                    f"graph tier did not answer {method} {path} within {timeout:.3g}s",
                    allowed=timeout,
                ) from None
            except (NewConnectionError, ConnectTimeoutError) as error:
                # NewConnectionError is a ConnectTimeoutError in urllib3 2: both mean "not sent".
                left = timeout - (time.monotonic() - started)
                if attempt >= self.connect_retries or left <= 0.05 * (attempt + 1):
                    raise GraphConnectError(
                        f"graph tier unreachable at {self.base_url} "
                        f"({_reason(error)}, {attempt + 1} attempt(s)); is it running?"
                    ) from None
                attempt += 1
                time.sleep(0.05 * attempt)
            except ProtocolError as error:
                # The server closed a kept-alive connection under us (or cut a body off): one
                # more try on a new connection, then 502.
                if not dropped_retry:
                    dropped_retry = True
                    log.info("graph connection dropped (%s); retrying once", _reason(error))
                    continue
                raise GraphRejectedError(
                    f"graph tier at {self.base_url} closed the connection during "
                    f"{method} {path} ({_reason(error)})"
                ) from None
            except HTTPError as error:
                raise GraphRejectedError(
                    f"graph tier at {self.base_url}: {method} {path} failed ({_reason(error)})"
                ) from None

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
