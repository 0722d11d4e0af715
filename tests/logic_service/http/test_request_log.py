"""The canonical request line is one JSON object with the fields an operator greps for."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import time
from collections.abc import Iterator

import pytest

from logic_service.http.request_log import (
    ACCESS_LOGGER,
    JsonFormatter,
    configure_logging,
    log_request,
)


def test_one_json_line_with_timings_in_ms(caplog) -> None:
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        logging.getLogger(ACCESS_LOGGER).propagate = True
        log_request(
            request_id="r-1",
            method="POST",
            path="/get_score",
            status=503,
            pipeline="credit",
            rows=3,
            timings={"preprocess": 0.0021, "total": 0.0105},
            error="graph tier unreachable",
        )
    line = JsonFormatter().format(caplog.records[-1])
    assert "\n" not in line
    payload = json.loads(line)
    assert payload["request_id"] == "r-1" and payload["status"] == 503
    assert payload["pipeline"] == "credit" and payload["rows"] == 3
    assert payload["preprocess_ms"] == 2.1 and payload["total_ms"] == 10.5
    assert payload["error"] == "graph tier unreachable"


@contextlib.contextmanager
def service_logging() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """The service's own logging set-up alone (one JSON handler), writing into a buffer.

    pytest's log capture hangs its handlers on the service logger during a test; they are
    taken off meanwhile, so the line takes the path it takes in the running service."""
    configure_logging(json_logs=True)
    service = logging.getLogger("logic_service")
    ours = [h for h in service.handlers if getattr(h, "_logic_service", False)]
    others = [h for h in service.handlers if h not in ours]
    for handler in others:
        service.removeHandler(handler)
    buffer = io.StringIO()
    ours[0].setStream(buffer)
    try:
        yield service, buffer
    finally:
        for handler in ours:
            service.removeHandler(handler)
        for handler in others:
            service.addHandler(handler)


def _one_request(status: int = 200) -> None:
    log_request(
        request_id="r-2",
        method="POST",
        path="/get_score",
        status=status,
        pipeline="credit",
        rows=1,
        timings={"total": 0.0012},
        extra={"batch_id": 7, "batch_size": 3},
    )


def test_the_shipped_set_up_writes_one_json_line_per_request() -> None:
    with service_logging() as (_, buffer):
        _one_request()
    lines = buffer.getvalue().splitlines()
    assert len(lines) == 1
    payload = json.loads(lines[0])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", payload.pop("ts"))
    assert payload == {
        "level": "INFO",
        "logger": ACCESS_LOGGER,
        "msg": "request",
        "request_id": "r-2",
        "method": "POST",
        "path": "/get_score",
        "status": 200,
        "pipeline": "credit",
        "rows": 1,
        "total_ms": 1.2,
        "batch_id": 7,
        "batch_size": 3,
    }


def test_a_filter_or_another_handler_still_sees_every_request_line() -> None:
    """The direct write is only for the shipped set-up: a filter an operator adds is obeyed,
    and a handler added next to the service's own gets the same record."""
    seen: list[logging.LogRecord] = []
    extra = logging.Handler()
    extra.emit = seen.append  # type: ignore[method-assign]
    with service_logging() as (service, buffer):
        (handler,) = service.handlers
        handler.addFilter(lambda record: getattr(record, "status", 0) != 404)
        _one_request(404)
        _one_request(200)
        service.addHandler(extra)
        _one_request(201)
        service.removeHandler(extra)
    assert [json.loads(line)["status"] for line in buffer.getvalue().splitlines()] == [200, 201]
    assert [record.status for record in seen] == [201]  # type: ignore[attr-defined]


@pytest.mark.parametrize("created", [0.0, 1.9995, 1_796_000_000.25, 1_796_000_000.999])
def test_timestamps_match_strftime_across_seconds(created: float) -> None:
    formatter = JsonFormatter()
    formatter.timestamp(created - 1.5)  # a different second cached before
    expected = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    assert formatter.timestamp(created) == f"{expected}.{int((created % 1) * 1000):03d}Z"
