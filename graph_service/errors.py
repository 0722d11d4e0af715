"""Every failure the graph service reports, and the one place that turns it into HTTP.

TF Serving answers errors as `{"error": "<message>"}` with the HTTP status derived from the
canonical error code (`ToHTTPStatusCode` in tensorflow_serving/model_servers/http_server.cc).
We carry the canonical code on the exception and map it here, so a handler never picks a
status by hand.
"""

from __future__ import annotations

import logging

import orjson
from werkzeug.exceptions import HTTPException

from tfs_protocol.errors import CodecError

logger = logging.getLogger(__name__)

# Canonical error code -> HTTP status, as TF Serving's HTTP server maps them.
HTTP_STATUS_BY_CODE: dict[str, int] = {
    "OK": 200,
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
    "UNAUTHENTICATED": 401,
}

# TensorFlow's integer error codes (tensorflow/core/protobuf/error_codes.proto).
CODE_NAMES: dict[int, str] = {
    1: "CANCELLED",
    2: "UNKNOWN",
    3: "INVALID_ARGUMENT",
    4: "DEADLINE_EXCEEDED",
    5: "NOT_FOUND",
    6: "ALREADY_EXISTS",
    7: "PERMISSION_DENIED",
    8: "RESOURCE_EXHAUSTED",
    9: "FAILED_PRECONDITION",
    10: "ABORTED",
    11: "OUT_OF_RANGE",
    12: "UNIMPLEMENTED",
    13: "INTERNAL",
    14: "UNAVAILABLE",
    15: "DATA_LOSS",
    16: "UNAUTHENTICATED",
}


class ServingError(Exception):
    """A request failure with TF Serving's canonical error code and message."""

    code = "UNKNOWN"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    @property
    def http_status(self) -> int:
        return HTTP_STATUS_BY_CODE.get(self.code, 500)


class InvalidArgumentError(ServingError):
    code = "INVALID_ARGUMENT"


class NotFoundError(ServingError):
    code = "NOT_FOUND"


class DeadlineExceededError(ServingError):
    code = "DEADLINE_EXCEEDED"


class PayloadTooLargeError(ServingError):
    """Our own guard (TF Serving has no body limit): answered 413, not RESOURCE_EXHAUSTED's 429."""

    code = "RESOURCE_EXHAUSTED"

    @property
    def http_status(self) -> int:
        return 413


def error_body(message: str) -> bytes:
    """TF Serving's error shape: `{"error": "<message>"}`."""
    return orjson.dumps({"error": message})


def status_and_body(exc: BaseException) -> tuple[int, bytes]:
    """(HTTP status, JSON body) for any exception raised while handling a request."""
    if isinstance(exc, ServingError):
        return exc.http_status, error_body(exc.message)
    if isinstance(exc, CodecError):
        return HTTP_STATUS_BY_CODE.get(exc.code, 400), error_body(str(exc))
    if isinstance(exc, HTTPException):
        status = exc.code or 500
        return status, error_body(f"{exc.name}: {exc.description}")
    logger.exception("unhandled error while serving a request")
    return 500, error_body(f"Internal error: {type(exc).__name__}: {exc}")


def from_tensorflow(exc: BaseException) -> ServingError:
    """Translate an exception raised by a TensorFlow call into a ServingError."""
    code_number = getattr(exc, "error_code", None)
    if isinstance(code_number, int) and code_number in CODE_NAMES:
        message = getattr(exc, "message", None) or str(exc)
        return ServingError(_op_error_text(message), CODE_NAMES[code_number])
    if isinstance(exc, TypeError | ValueError):
        return InvalidArgumentError(_one_line(str(exc)))
    return ServingError(f"{type(exc).__name__}: {_one_line(str(exc))}", "INTERNAL")


def _op_error_text(message: str) -> str:
    """The cause out of TensorFlow's "Graph execution error: ... Detected at node ..." text."""
    paragraphs = [
        p.strip()
        for p in message.split("\n\n")
        if p.strip() and not p.startswith(("Graph execution error", "Detected at node"))
    ]
    cause = paragraphs[-1] if paragraphs else message
    return _one_line(cause.split("\n\t")[0])


def _one_line(text: str, limit: int = 600) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
