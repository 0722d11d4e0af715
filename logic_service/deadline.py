"""A request's time budget: every wait on its behalf (queue, graph call) gets what is left.

The budget starts when the request arrives (LOGIC_REQUEST_TIMEOUT, 10 s by default); a caller
may lower it with `X-Request-Timeout-Ms`, never raise it past the service's own limit.
"Arrives" is when the server saw the request's first bytes: the gunicorn worker
(logic_service/http/worker.py) stamps that moment into the WSGI environ under RECEIVED_KEY, so time
spent waiting for a free request thread counts too. Under another server the key is absent
and the budget starts when the app is called.
"""

from __future__ import annotations

import time

from logic_service.errors import BadRequestError

TIMEOUT_HEADER = "X-Request-Timeout-Ms"
RECEIVED_KEY = "logic_service.received"  # environ: time.monotonic() of the first bytes


class Deadline:
    """A point on the monotonic clock by which the request must be answered."""

    __slots__ = ("budget", "expires")

    def __init__(self, budget: float, start: float | None = None) -> None:
        self.budget = budget
        self.expires = (time.monotonic() if start is None else start) + budget

    @classmethod
    def for_request(
        cls, header: str | None, default: float, received: float | None = None
    ) -> Deadline:
        """The service default, lowered by the caller's header, counted from `received`
        (now when None); 400 for a header that is not a positive whole number of ms."""
        if not header:
            return cls(default, received)
        try:
            millis = int(header)
        except ValueError:
            millis = 0
        if millis <= 0:
            raise BadRequestError(
                f"{TIMEOUT_HEADER}: {header[:40]!r} is not a positive whole number of "
                "milliseconds; send e.g. 500, or leave the header out for the service default"
            )
        return cls(min(default, millis / 1000.0), received)

    def remaining(self) -> float:
        """Seconds left (0 when passed)."""
        return max(0.0, self.expires - time.monotonic())

    def expired(self) -> bool:
        return time.monotonic() >= self.expires
