"""The background threads that open and close a target's breaker without a caller paying.

`Watchdog`: one thread per target and worker process, asleep until the oldest graph call in
flight would pass its overdue limit (overdue.py; at least once per floor). An overdue call
trips the breaker while it is still in flight.

`Prober`: while the breaker is not closed, one thread per target and worker process sends the
probe calls that decide recovery, one at a time (breaker.py says when each is due). A probe
is a real call with the target's own timeout; a caller's request is never used as one, so
no caller waits on a graph that may be frozen.

Both are started lazily in the process that needs them: threads do not survive gunicorn's
fork, and the master, which loads the app, never calls the graph.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from logic_service.graph.breaker import CLOSED, Breaker
from logic_service.graph.overdue import CallTracker, Overdue

log = logging.getLogger(__name__)

# What a probe call came to: the graph answered (anything at all), the call timed out on a
# graph that took it, or no connection could be made (or it broke off).
ANSWERED, TIMEOUT, UNREACHABLE = "answered", "timeout", "unreachable"
ProbeCall = Callable[[float], str]


class Watchdog:
    """Trips `breaker` when `calls` has a call in flight past its overdue limit."""

    def __init__(
        self,
        name: str,
        calls: CallTracker,
        breaker: Breaker,
        on_overdue: Callable[[Overdue], None],
    ) -> None:
        self.name = name
        self._calls = calls
        self._breaker = breaker
        self._on_overdue = on_overdue
        self._pid: int | None = None
        self._lock = threading.Lock()

    def ensure_running(self) -> None:
        """Start this process's thread (cheap when it runs already)."""
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
        threading.Thread(target=self._run, name=f"watchdog-{self.name}", daemon=True).start()

    def _run(self) -> None:
        while True:
            if self._breaker.state != CLOSED:
                # Open: the prober decides from here; the calls it was opened for are
                # not judged again once it closes (`closed_at`).
                self._breaker.wait_closed(self._calls.rule.floor)
                continue
            due = self._calls.next_check(self._breaker.closed_at)
            time.sleep(max(due - time.monotonic(), 0.01))
            if self._breaker.state != CLOSED:
                continue
            verdict = self._calls.verdict(self._breaker.closed_at)
            if verdict is None:
                continue
            try:
                self._on_overdue(verdict)
            except Exception:  # the watchdog must outlive any one verdict
                log.exception("graph %s: acting on an overdue call failed", self.name)
                time.sleep(self._calls.rule.floor)


class Prober:
    """Sends `probe(timeout)` whenever the breaker says one is due, until it closes."""

    def __init__(
        self,
        name: str,
        breaker: Breaker,
        probe: ProbeCall,
        timeout: float,
        on_outcome: Callable[[str], None] | None = None,
    ) -> None:
        self.name = name
        self._breaker = breaker
        self._probe = probe
        self.timeout = timeout
        self._on_outcome = on_outcome
        self._lock = threading.Lock()
        self._running_in: int | None = None  # the pid whose thread is probing

    def start(self) -> None:
        """Probe from this process until the breaker closes (no-op when already probing)."""
        with self._lock:
            if self._running_in == os.getpid():
                return
            self._running_in = os.getpid()
        threading.Thread(target=self._run, name=f"prober-{self.name}", daemon=True).start()

    def _run(self) -> None:
        while True:
            with self._lock:
                # Decided under the lock `start` takes: a breaker opening again after this
                # look finds no thread running and starts one.
                wait = self._breaker.until_probe()
                if wait is None:
                    self._running_in = None
                    return
            if wait > 0:
                self._breaker.wait_closed(wait)
                continue
            episode = self._breaker.start_probe()
            if episode is None:  # closed, or opened again meanwhile: look again
                self._breaker.wait_closed(0.01)
                continue
            try:
                outcome = self._probe(self.timeout)
            except Exception:  # a prober that died would leave the breaker open for good
                log.exception("graph %s: breaker probe failed unexpectedly", self.name)
                outcome = UNREACHABLE
            log.info("graph %s: breaker probe %s", self.name, outcome)
            if self._on_outcome is not None:
                self._on_outcome(outcome)
            if outcome == ANSWERED:
                self._breaker.probe_answered(episode)
            elif outcome == TIMEOUT:
                # The graph takes calls and does not answer: keep one waiting on it.
                self._breaker.probe_failed(episode, 0.0)
            else:
                self._breaker.probe_failed(episode, self._breaker.reset_seconds)
