"""A request's time budget: every wait on its behalf (queue, graph call) gets what is left.

The budget starts when the request arrives (LOGIC_REQUEST_TIMEOUT, 10 s by default); a caller
may lower it with `X-Request-Timeout-Ms`, never raise it past the service's own limit.
"""

from __future__ import annotations

import time

from logic_service.errors import BadRequestError

TIMEOUT_HEADER = "X-Request-Timeout-Ms"


class Deadline:
    """A point on the monotonic clock by which the request must be answered."""

    __slots__ = ("budget", "expires")

    def __init__(self, budget: float, start: float | None = None) -> None:
        self.budget = budget
        self.expires = (time.monotonic() if start is None else start) + budget

    @classmethod
    def for_request(cls, header: str | None, default: float) -> Deadline:
        """The service default, lowered by the caller's header; 400 for a header that is not
        a positive whole number of milliseconds."""
        if not header:
            return cls(default)
        try:
            millis = int(header)
        except ValueError:
            millis = 0
        if millis <= 0:
            raise BadRequestError(
                f"{TIMEOUT_HEADER}: {header[:40]!r} is not a positive whole number of "
                "milliseconds; send e.g. 500, or leave the header out for the service default"
            )
        return cls(min(default, millis / 1000.0))

    def remaining(self) -> float:
        """Seconds left (0 when passed)."""
        return max(0.0, self.expires - time.monotonic())

    def expired(self) -> bool:
        return time.monotonic() >= self.expires
