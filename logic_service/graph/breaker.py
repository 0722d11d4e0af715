"""A circuit breaker per graph target: stop tying up request threads on a graph that is down.

Closed: calls go through; consecutive connect failures or timeouts are counted. At
`failures` in a row it opens: calls fail at once (503 naming the graph and when it is tried
again) for `reset_seconds`. Then half-open: one probe call goes through; its success closes
the breaker, its failure opens it again. Any answer from the graph (even a 4xx) is a success:
the graph is up.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from logic_service.errors import GraphUnavailableError

CLOSED, HALF_OPEN, OPEN = 0, 1, 2
STATE_NAMES = {CLOSED: "closed", HALF_OPEN: "half-open", OPEN: "open"}


class BreakerOpenError(GraphUnavailableError):
    """The breaker is open: the graph was not called at all."""


class Breaker:
    """Thread-safe; `failures=0` disables it (always closed)."""

    def __init__(
        self,
        name: str,
        failures: int,
        reset_seconds: float,
        on_change: Callable[[int], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.failures = failures
        self.reset_seconds = reset_seconds
        self._on_change = on_change
        self._clock = clock
        self._lock = threading.Lock()
        self._state = CLOSED
        self._consecutive = 0
        self._opened_at = 0.0
        self._probe_out = False

    @property
    def state(self) -> int:
        return self._state

    def check(self) -> None:
        """Fail fast in the request thread (reserves nothing): open, or a probe already out."""
        if self._state == CLOSED:
            return
        retry_in = self._opened_at + self.reset_seconds - self._clock()
        if (self._state == OPEN and retry_in > 0) or (self._state == HALF_OPEN and self._probe_out):
            raise self._open_error(retry_in)

    def before_call(self) -> None:
        """Raise BreakerOpenError unless a call may go out now (a probe when half-open)."""
        if self._state == CLOSED:
            return
        with self._lock:
            if self._state == CLOSED:
                return
            retry_in = self._opened_at + self.reset_seconds - self._clock()
            if self._state == OPEN and retry_in <= 0:
                self._set(HALF_OPEN)
            if self._state == HALF_OPEN and not self._probe_out:
                self._probe_out = True
                return
        raise self._open_error(retry_in)

    def _open_error(self, retry_in: float) -> BreakerOpenError:
        return BreakerOpenError(
            f"graph {self.name} is failing ({self._consecutive} connect failure(s) or "
            f"timeout(s) in a row): not called; tried again in {max(retry_in, 0.0):.1f}s"
        )

    def success(self) -> None:
        if self._state == CLOSED and self._consecutive == 0:
            return
        with self._lock:
            self._consecutive = 0
            self._probe_out = False
            if self._state != CLOSED:
                self._set(CLOSED)

    def failure(self) -> None:
        with self._lock:
            self._consecutive += 1
            self._probe_out = False
            if self.failures and (self._state == HALF_OPEN or self._consecutive >= self.failures):
                self._opened_at = self._clock()
                self._set(OPEN)

    def release_probe(self) -> None:
        """A probe that ended without telling anything about the graph (e.g. a bad request)."""
        with self._lock:
            self._probe_out = False

    def snapshot(self) -> dict[str, object]:
        """For /ready: state, failures in a row, seconds until the next try when open."""
        info: dict[str, object] = {
            "state": STATE_NAMES[self._state],
            "consecutive_failures": self._consecutive,
        }
        if self._state == OPEN:
            left = self._opened_at + self.reset_seconds - self._clock()
            info["retry_in_seconds"] = round(max(left, 0.0), 3)
        return info

    def _set(self, state: int) -> None:
        self._state = state
        if self._on_change is not None:
            self._on_change(state)
