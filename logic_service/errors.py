"""The logic tier's exceptions: one hierarchy, each class carrying the HTTP status it means.

Every failure a caller or an operator can act on is one of these, with a message saying what
is wrong and what to do. `logic_service/http/error_handlers.py` is the one place that turns
them (and werkzeug's and unexpected errors) into responses. Upstream (graph tier) failures
map to 502/503/504, never to a bare 500. No web framework is imported here: the pipeline
code that raises these also runs in the compile command's build environments.
"""

from __future__ import annotations

_METHOD_NOT_ALLOWED = "method not allowed for this URL"
_TOO_LARGE = "request body too large: send fewer rows per request"


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

    def __init__(self, message: str = _METHOD_NOT_ALLOWED) -> None:
        super().__init__(message)


class PayloadTooLargeError(LogicError):
    """The body is over LOGIC_MAX_CONTENT_LENGTH; it is not read."""

    status = 413

    def __init__(self, message: str = _TOO_LARGE) -> None:
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
