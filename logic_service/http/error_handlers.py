"""The one place that turns the logic tier's errors into HTTP responses.

Every error leaves the service in the same body shape the success path uses:
`{"msg": <clear text>, "code": <http status>, "data": null}`, never an HTML page: our
`LogicError`s with their own status, werkzeug's HTTP errors (404, 405, 413) with our texts,
and anything unexpected as a 500 naming the exception (its traceback goes to the log). Used
by the Flask routes and by `ScoreEndpoint`, which serves `/get_score` before Flask.
"""

from __future__ import annotations

import logging
from http import HTTPStatus

import orjson
from flask import Flask, Response
from werkzeug.exceptions import HTTPException

from logic_service.errors import LogicError, MethodNotAllowedError, PayloadTooLargeError

log = logging.getLogger(__name__)

_HTTP_MESSAGES = {
    404: "not found: see GET /pipelines for the pipelines and POST /get_score for scoring",
    405: str(MethodNotAllowedError()),
    413: str(PayloadTooLargeError()),
}


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
