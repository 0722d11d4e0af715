"""A circuit breaker per graph target: stop tying up request threads on a graph that is failing.

Closed: calls go through; consecutive connect failures or timeouts are counted. It opens at
`failures` in a row, or at once when the target's watchdog finds a call in flight overdue
(overdue.py): a frozen graph finishes no call, so counting finished failures never opens it.
Open: callers get 503 at once, naming the graph and when it is tried again, and the requests
already queued for the target are answered the same way (the target's `on_open`).

Recovery is the target's prober's job (prober.py), never a caller's request: once the next
probe is due (`reset_seconds` after failures in a row; at once after an overdue call) the
breaker turns half-open and one probe call goes out. Its answer closes the breaker; if it
times out the next probe goes out at once, so a graph that accepts calls but does not answer
always has a probe waiting on it and is noticed the moment it answers; if it cannot connect,
the next one is due `reset_seconds` later. A caller's call that was already in flight and is
answered closes the breaker too. Any answer from the graph (even a 4xx) means it is up.
"""

from __future__ import annotations

import math
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
        *,
        on_change: Callable[[int], None] | None = None,
        on_open: Callable[[BreakerOpenError], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.failures = failures
        self.reset_seconds = reset_seconds
        self._on_change = on_change
        self._on_open = on_open
        self._clock = clock
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._closed.set()
        self._state = CLOSED
        self._consecutive = 0
        self._reason = ""
        self.cause = ""  # why it last opened: "failures" (in a row) or "overdue"
        self._next_probe = 0.0
        self._probe_sent = 0.0
        self.episode = 0  # one per opening: a probe's late answer never acts on a later one
        self.closed_at = -math.inf

    @property
    def state(self) -> int:
        return self._state

    @property
    def enabled(self) -> bool:
        return self.failures > 0

    # --- callers --------------------------------------------------------------------------

    def check(self) -> None:
        """Raise BreakerOpenError unless the breaker is closed (callers never probe)."""
        if self._state != CLOSED:
            raise self.open_error()

    def open_error(self) -> BreakerOpenError:
        now = self._clock()
        if self._state == HALF_OPEN:
            when = f"tried again as soon as it answers the probe sent {now - self._probe_sent:.1f}s ago"
        else:
            when = f"tried again in {max(self._next_probe - now, 0.0):.1f}s"
        return BreakerOpenError(
            f"graph {self.name} is failing ({self._reason}): not called; {when}"
        )

    def success(self) -> None:
        """A caller's call was answered: the graph is up."""
        if self._state == CLOSED and self._consecutive == 0:
            return
        with self._lock:
            self._consecutive = 0
            if self._state != CLOSED:
                self._close()

    def failure(self) -> None:
        """A caller's call could not connect or timed out (with time enough to mean it)."""
        with self._lock:
            self._consecutive += 1
            if self._state != CLOSED or not self.failures or self._consecutive < self.failures:
                return
            error = self._open(
                f"{self._consecutive} connect failure(s) or timeout(s) in a row",
                self.reset_seconds,
                "failures",
            )
        self._opened(error)

    def trip(self, reason: str) -> bool:
        """Open now, for `reason` (a call in flight overdue); the first probe is due at once.
        False when the breaker is off or already open."""
        with self._lock:
            if self._state != CLOSED or not self.failures:
                return False
            error = self._open(reason, 0.0, "overdue")
        self._opened(error)
        return True

    # --- the prober -----------------------------------------------------------------------

    def until_probe(self) -> float | None:
        """Seconds until the next probe may go out (0: now); None when closed."""
        if self._state == CLOSED:
            return None
        return max(self._next_probe - self._clock(), 0.0)

    def wait_closed(self, timeout: float) -> bool:
        return self._closed.wait(timeout)

    def start_probe(self) -> int | None:
        """Turn half-open for one probe; its episode, or None (closed, or not due yet)."""
        with self._lock:
            now = self._clock()
            if self._state != OPEN or now < self._next_probe:
                return None
            self._probe_sent = now
            self._set(HALF_OPEN)
            return self.episode

    def probe_answered(self, episode: int) -> None:
        with self._lock:
            if episode == self.episode and self._state != CLOSED:
                self._consecutive = 0
                self._close()

    def probe_failed(self, episode: int, retry_in: float) -> None:
        """Open again; the next probe is due in `retry_in` seconds."""
        with self._lock:
            if episode == self.episode and self._state == HALF_OPEN:
                self._next_probe = self._clock() + retry_in
                self._set(OPEN)

    # --- state ----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, object]:
        """For /ready: state, failures in a row, why and until when it is open."""
        info: dict[str, object] = {
            "state": STATE_NAMES[self._state],
            "consecutive_failures": self._consecutive,
        }
        if self._state != CLOSED:
            info["reason"] = self._reason
        if self._state == OPEN:
            info["retry_in_seconds"] = round(max(self._next_probe - self._clock(), 0.0), 3)
        elif self._state == HALF_OPEN:
            info["probe_out_seconds"] = round(self._clock() - self._probe_sent, 3)
        return info

    def _open(self, reason: str, probe_in: float, cause: str) -> BreakerOpenError:
        """Under the lock: open for `reason`; the error callers get."""
        self.episode += 1
        self._reason, self.cause = reason, cause
        self._next_probe = self._clock() + probe_in
        self._closed.clear()
        self._set(OPEN)
        return self.open_error()

    def _opened(self, error: BreakerOpenError) -> None:
        """Outside the lock: tell the target (answer its queue, start its prober)."""
        if self._on_open is not None:
            self._on_open(error)

    def _close(self) -> None:
        self.closed_at = self._clock()
        self._set(CLOSED)
        self._closed.set()

    def _set(self, state: int) -> None:
        self._state = state
        if self._on_change is not None:
            self._on_change(state)
