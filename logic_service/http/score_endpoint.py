"""POST /get_score as a bare WSGI endpoint in front of the Flask app: the hot path.

Hand-made, in place of a library's: Flask routing for this one URL. Flask serves every other
route (/health, /ready, /pipelines, /metrics, /openapi.json); requests for /get_score are taken
before Flask, installed the way Flask documents middleware (`app.wsgi_app =
ScoreEndpoint(app.wsgi_app, ...)`), so Flask's test client and every server see the same thing.

Why, measured: `python benchmarks/bench_score_endpoint.py` calls the same app in-process
with a 1-row body, once through this endpoint and once through a Flask view doing the same
work (decode, Scorer.score, encode, log line, metrics): 80-89 us of CPU per call against
212-217 us (2.4-2.7x over three runs; median of 5 x 3000 calls each, 2 shared cores). Flask's
request context, URL routing, hooks and Response object cost more than validation and the
compiled features together, and this path runs once per business request.

Same contract as any route: the body limit (413), the JSON envelope and error mapping
(http/error_handlers.py), X-Request-ID echoed or made, the deadline header, X-Model-Version
naming the graph version that answered (logic_service/traffic/), one metrics observation and
one JSON log line per request. What it does not do: Flask's before/after request hooks,
blueprints or extensions for this URL (add behaviour here, not as a Flask hook). Pinned by
tests/logic_service/test_cli.py (methods, chunked bodies, 413, one log line through gunicorn)
and test_app.py (every error of the table through the app).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from logic_service.deadline import RECEIVED_KEY, Deadline
from logic_service.errors import (
    BadRequestError,
    LogicError,
    MethodNotAllowedError,
    PayloadTooLargeError,
)
from logic_service.http.codecs import decode_score_request, encode_score_response
from logic_service.http.error_handlers import error_body, status_line, unexpected_error
from logic_service.http.request_log import RequestInfo
from logic_service.metrics import Metrics
from logic_service.scoring import Scorer

log = logging.getLogger(__name__)

PATH = "/get_score"
VERSION_HEADER = "X-Model-Version"
ALLOW = "OPTIONS, POST"
_JSON = ("Content-Type", "application/json")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class ScoreEndpoint:
    """WSGI middleware: POST /get_score scored here, everything else passed to `app`."""

    def __init__(
        self,
        app: WSGIApp,
        scorer: Scorer,
        metrics: Metrics,
        *,
        max_content_length: int,
        request_timeout: float,
    ) -> None:
        self.app = app
        self.scorer = scorer
        self.metrics = metrics
        self.max_content_length = max_content_length
        self.request_timeout = request_timeout

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != PATH:
            return self.app(environ, start_response)
        method = environ.get("REQUEST_METHOD", "")
        info = RequestInfo.begin(environ.get("HTTP_X_REQUEST_ID"))
        error = None
        headers = [_JSON]
        try:
            if method == "POST":
                body, status = self.score(environ, info), 200
            elif method == "OPTIONS":
                headers.append(("Allow", ALLOW))
                body, status = b"", 200
            else:
                headers.append(("Allow", ALLOW))
                raise MethodNotAllowedError()
        except LogicError as failure:
            status, error = failure.status, str(failure)
            body = error_body(status, error)
        except Exception as failure:  # the one catch-all of this route, as Flask's handler
            log.exception("unhandled error")
            status, error = unexpected_error(failure)
            body = error_body(status, error)
        headers += [("Content-Length", str(len(body))), ("X-Request-ID", info.request_id)]
        version = info.trace.get("model_version")
        if version is not None:  # the graph version that answered (or failed to)
            headers.append((VERSION_HEADER, version))
        start_response(status_line(status), headers)
        info.finish(method, PATH, status, error)
        # Only configured names become labels: a caller's typo must not grow the series.
        label = info.pipeline if info.pipeline in self.scorer.pipelines else "-"
        self.metrics.observe(label, status, info.timings)
        return [body]

    def score(self, environ: dict[str, Any], info: RequestInfo) -> bytes:
        """Body -> pipeline -> Scorer.score -> the success body; raises LogicError."""
        body = self.read_body(environ)
        score_request = decode_score_request(body, environ.get("CONTENT_TYPE"))
        pipeline = self.scorer.select(score_request.model)
        info.pipeline = pipeline.name
        deadline = Deadline.for_request(
            environ.get("HTTP_X_REQUEST_TIMEOUT_MS"),
            self.request_timeout,
            environ.get(RECEIVED_KEY),
        )
        result = self.scorer.score(
            pipeline,
            score_request.data,
            info.request_id,
            info.timings,
            deadline=deadline,
            trace=info.trace,
            header=lambda name: environ.get(wsgi_header_key(name)),
        )
        info.rows = result.rows
        return encode_score_response(result.data)

    def read_body(self, environ: dict[str, Any]) -> bytes:
        """The whole body, at most `max_content_length` bytes (413 past it, unread)."""
        stream = environ["wsgi.input"]
        limit = self.max_content_length
        length = environ.get("CONTENT_LENGTH")
        if length:
            try:
                size = int(length)
            except ValueError:
                raise BadRequestError(
                    f"Content-Length {length[:20]!r} is not a number of bytes"
                ) from None
            if size > limit:
                raise PayloadTooLargeError()
            return stream.read(size) if size > 0 else b""
        if environ.get("wsgi.input_terminated"):  # chunked: the server ends the stream
            body = stream.read(limit + 1)
            if len(body) > limit:
                raise PayloadTooLargeError()
            return body
        return b""


def wsgi_header_key(name: str) -> str:
    """Where WSGI keeps a request header: `X-Customer-ID` -> `HTTP_X_CUSTOMER_ID`."""
    return "HTTP_" + name.upper().replace("-", "_")
