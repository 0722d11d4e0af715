"""Logging for the service: JSON lines, and one canonical line per request.

The per-request line carries the request id, pipeline, rows, status and stage timings, so
one grep answers "what happened to request X" without correlating several lines.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

ACCESS_LOGGER = "logic_service.request"
REQUEST_ID_HEADER = "X-Request-ID"
_MAX_REQUEST_ID = 128
_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


@dataclass(slots=True)
class RequestInfo:
    """What one request's log line and metrics need, noted as the request runs."""

    started: float
    request_id: str
    timings: dict[str, float] = field(default_factory=dict)
    trace: dict[str, Any] = field(default_factory=dict)  # model_version, graph batch id and size
    pipeline: str | None = None
    rows: int | None = None

    @classmethod
    def begin(cls, incoming_id: str | None) -> RequestInfo:
        """Start the clock; keep the caller's X-Request-ID (printable, at most 128
        characters) or make one."""
        request_id = ""
        if incoming_id and incoming_id.isprintable():
            request_id = incoming_id[:_MAX_REQUEST_ID]
        return cls(time.perf_counter(), request_id or os.urandom(16).hex())  # uuid4().hex's form

    def finish(self, method: str, path: str, status: int, error: str | None = None) -> None:
        """Stop the clock (the "total" timing) and write the request's one log line."""
        self.timings["total"] = time.perf_counter() - self.started
        log_request(
            request_id=self.request_id,
            method=method,
            path=path,
            status=status,
            pipeline=self.pipeline,
            rows=self.rows,
            timings=self.timings,
            error=error,
            extra=self.trace or None,
        )


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message and any `extra` fields."""

    def __init__(self) -> None:
        super().__init__()
        self._second: tuple[int, str] = (-1, "")  # the last whole second, formatted

    def timestamp(self, created: float) -> str:
        """ISO 8601 UTC with milliseconds; strftime runs once a second, not once a line."""
        second = int(created)
        cached = self._second
        if cached[0] != second:
            cached = self._second = (
                second,
                time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)),
            )
        return f"{cached[1]}.{int((created - second) * 1000):03d}Z"

    def request_line(self, fields: dict[str, Any], created: float) -> str:
        """The per-request line (fields prepared by log_request), as format() writes it."""
        payload: dict[str, Any] = {
            "ts": self.timestamp(created),
            "level": "INFO",
            "logger": ACCESS_LOGGER,
            "msg": "request",
        }
        payload.update(fields)
        return orjson.dumps(payload, default=str).decode()

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "_fields", None)
        if fields is not None:
            return self.request_line(fields, record.created)
        payload: dict[str, Any] = {
            "ts": self.timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(payload, default=str).decode()


def configure_logging(json_logs: bool = True, level: int = logging.INFO) -> None:
    """Route the service's loggers to stderr (gunicorn captures it), JSON or plain text."""
    logger = logging.getLogger("logic_service")
    for handler in list(logger.handlers):
        if getattr(handler, "_logic_service", False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._logic_service = True  # type: ignore[attr-defined]
    handler.setFormatter(
        JsonFormatter() if json_logs else logging.Formatter("%(levelname)s %(name)s %(message)s")
    )
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


def log_request(
    *,
    request_id: str,
    method: str,
    path: str,
    status: int,
    pipeline: str | None,
    rows: int | None,
    timings: dict[str, float],
    error: str | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """The canonical line for one request (timings in milliseconds); `extra` adds fields
    (the graph batch's id and size)."""
    fields: dict[str, Any] = {
        "request_id": request_id,
        "method": method,
        "path": path,
        "status": status,
        "pipeline": pipeline,
        "rows": rows,
        **{f"{stage}_ms": round(seconds * 1000, 3) for stage, seconds in timings.items()},
    }
    if error:
        fields["error"] = error
    if extra:
        fields.update(extra)
    logger = logging.getLogger(ACCESS_LOGGER)
    if not logger.isEnabledFor(logging.INFO):
        return
    handler = _sole_json_handler(logger)
    if handler is not None:
        # The shipped set-up: the same line, without a LogRecord and the handler chain,
        # which cost more than the rest of the request's bookkeeping together.
        line = handler.formatter.request_line(fields, time.time())  # type: ignore[union-attr]
        with handler.lock:  # type: ignore[union-attr]
            try:
                handler.stream.write(line + handler.terminator)
                handler.flush()
            except Exception:
                handler.handleError(_record(logger, fields))
        return
    logger.handle(_record(logger, fields))


def _record(logger: logging.Logger, fields: dict[str, Any]) -> logging.LogRecord:
    # Built directly (no caller lookup, no `extra` merge): this runs once per request.
    record = logger.makeRecord(ACCESS_LOGGER, logging.INFO, __file__, 0, "request", (), None)
    record._fields = fields
    for key, value in fields.items():  # text-format handlers and filters still see them
        setattr(record, key, value)
    return record


def _sole_json_handler(logger: logging.Logger) -> logging.StreamHandler | None:
    """The service's own JSON handler when it is the only thing that sees request lines:
    nothing else attached, no filters, no propagation past the service's logger."""
    parent = logger.parent
    if logger.handlers or logger.filters or not logger.propagate or parent is None:
        return None
    if parent.propagate or len(parent.handlers) != 1:
        return None
    handler = parent.handlers[0]
    if (
        not getattr(handler, "_logic_service", False)
        or handler.filters
        or handler.level > logging.INFO
        or type(handler.formatter) is not JsonFormatter
    ):
        return None
    return handler  # type: ignore[return-value]
