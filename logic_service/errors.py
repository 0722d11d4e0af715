"""The logic tier's exceptions and the one place that turns them into HTTP responses.

Every error leaves the service in the same body shape the success path uses:
`{"msg": <clear text>, "code": <http status>, "data": null}`. Upstream (graph tier)
failures map to 502/503/504, never to a bare 500 with an HTML page.
"""

from __future__ import annotations

import logging
from http import HTTPStatus

import orjson
from flask import Flask, Response
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

_HTTP_MESSAGES = {
    404: "not found: see GET /pipelines for the pipelines and POST /get_score for scoring",
    405: "method not allowed for this URL",
    413: "request body too large: send fewer rows per request",
}


class LogicError(Exception):
    """Base class: a failure with a message the caller can act on and an HTTP status."""

    status = 500


class ConfigError(LogicError):
    """The pipeline file or an artifact it names cannot be used; the service refuses to start."""

    status = 500


class BadRequestError(LogicError):
    """The request body is malformed or does not match the pipeline's input contract."""

    status = 400


class UnknownPipelineError(LogicError):
    """The body names a pipeline that is not configured."""

    status = 404


class UnsupportedMediaTypeError(LogicError):
    """The body is not declared as JSON."""

    status = 415


class MethodNotAllowedError(LogicError):
    """The URL exists, the method does not (the response names the allowed ones)."""

    status = 405

    def __init__(self, message: str = _HTTP_MESSAGES[405]) -> None:
        super().__init__(message)


class PayloadTooLargeError(LogicError):
    """The body is over LOGIC_MAX_CONTENT_LENGTH; it is not read."""

    status = 413

    def __init__(self, message: str = _HTTP_MESSAGES[413]) -> None:
        super().__init__(message)


class GraphUnavailableError(LogicError):
    """The graph tier cannot be reached, or the model is not loaded there."""

    status = 503


class GraphTimeoutError(LogicError):
    """The graph tier accepted the connection but did not answer in time."""

    status = 504


class GraphRejectedError(LogicError):
    """The graph tier refused the request (shape/dtype mismatch, unknown signature, ...)."""

    status = 502


def error_body(status: int, message: str) -> bytes:
    """The single error body shape, serialised once here (Flask routes and ScoreEndpoint)."""
    return orjson.dumps({"msg": message, "code": status, "data": None})


def error_response(status: int, message: str) -> Response:
    return Response(error_body(status, message), status=status, mimetype="application/json")


def unexpected_error(error: Exception) -> tuple[int, str]:
    """What a bug answers: 500 naming the exception (the traceback goes to the log)."""
    return 500, f"internal error: {type(error).__name__}: {error}"


def status_line(status: int) -> str:
    """`200 OK`, as WSGI's start_response wants it."""
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Unknown"


def register_error_handlers(app: Flask) -> None:
    """Route our errors, werkzeug's HTTP errors and anything unexpected to `error_response`."""

    @app.errorhandler(LogicError)
    def _logic_error(error: LogicError) -> Response:
        return error_response(error.status, str(error))

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        status = error.code or 500
        message = _HTTP_MESSAGES.get(status) or (error.description or error.name)
        response = error_response(status, message)
        if status == 405 and error.get_response().headers.get("Allow"):
            response.headers["Allow"] = error.get_response().headers["Allow"]
        return response

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        log.exception("unhandled error")
        return error_response(*unexpected_error(error))
