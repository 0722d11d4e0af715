"""The one place that turns an exception into a gRPC status, as TF Serving's gRPC server does.

TF Serving returns the canonical error code of a failed call as the gRPC status code
(`ToGRPCStatus` in tensorflow_serving/model_servers/grpc_status_util.cc) with the same
message its REST API puts in `{"error": ...}`. The canonical code names and the
exception -> code decisions live in `graph_service.errors`; this module only changes the
transport, so REST and gRPC cannot disagree about a failure.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import grpc

from graph_service.errors import CODE_NAMES, HTTP_STATUS_BY_CODE, ServingError
from tfs_protocol.errors import CodecError

logger = logging.getLogger(__name__)

Handler = TypeVar("Handler", bound=Callable[..., Any])

# Canonical code name -> its number (tensorflow/core/protobuf/error_codes.proto), for the
# StatusProto fields of GetModelStatus and HandleReloadConfigRequest answers.
CODE_NUMBERS: dict[str, int] = {"OK": 0, **{name: number for number, name in CODE_NAMES.items()}}


def status_code(code: str) -> grpc.StatusCode:
    """gRPC status for a canonical code name; names TF Serving does not define are UNKNOWN."""
    if code not in HTTP_STATUS_BY_CODE:
        return grpc.StatusCode.UNKNOWN
    return grpc.StatusCode[code]


def canonical_code(exc: BaseException) -> str:
    """The canonical code name a failed RPC answers (and the metrics count) for `exc`."""
    if isinstance(exc, (ServingError, CodecError)):
        return exc.code
    return "INTERNAL"


def code_and_message(exc: BaseException) -> tuple[str, str]:
    """(canonical code name, message) for any exception raised while answering an RPC."""
    if isinstance(exc, ServingError):
        return exc.code, exc.message
    if isinstance(exc, CodecError):
        return exc.code, str(exc)
    logger.exception("unhandled error while serving a gRPC call")
    return canonical_code(exc), f"Internal error: {type(exc).__name__}: {exc}"


def reports_errors(handler: Handler) -> Handler:
    """Servicer-method decorator: any failure ends this one call with its status, never more."""

    @functools.wraps(handler)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return handler(self, request, context)
        except Exception as exc:
            code, message = code_and_message(exc)
            logger.debug("gRPC %s -> %s: %s", handler.__name__, code, message)
            context.abort(status_code(code), message)

    return wrapper  # type: ignore[return-value]
