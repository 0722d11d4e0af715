"""When a graph call still in flight counts as failing: far past what the target's calls take.

The breaker counts calls that have finished failing. A frozen graph finishes nothing: under
load the batcher folds every request into a handful of calls that all wait out their budget,
and the breaker never sees a failure. So each target also tracks its calls in flight and the
latency of its last answered calls, and judges the oldest call in flight:

    overdue after = max(floor, factor x p99 of the last WINDOW answered calls)

(10 x p99, at least 1 s by default), judged only once `min_calls` calls have been answered in
this process, so a new target, or one whose calls all fail, is never judged on too little.
A model that answers in 300 ms every time is overdue only after 3 s; a 5 ms model after the
1 s floor. An overdue call opens the target's breaker (breaker.py) while it is still in
flight. Calls that time out or fail are not latencies: they never raise the limit.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

# The answered calls the percentile is taken over, and the percentile itself: p99 of 256 leaves
# out the two slowest calls, so a stray hiccup does not raise the limit on its own.
WINDOW = 256
PERCENTILE = 0.99


@dataclass(frozen=True)
class OverdueRule:
    """LOGIC_OVERDUE_FACTOR, LOGIC_OVERDUE_FLOOR_MS and LOGIC_OVERDUE_MIN_CALLS."""

    factor: float = 10.0  # 0 turns the rule off
    floor: float = 1.0  # seconds
    min_calls: int = 20

    @property
    def enabled(self) -> bool:
        return self.factor > 0

    def limit(self, latencies: list[float]) -> tuple[float, float] | None:
        """(overdue after, the percentile it came from) in seconds; None while too few calls
        have been answered to say what is normal."""
        if not self.enabled or len(latencies) < self.min_calls:
            return None
        ordered = sorted(latencies)
        high = ordered[max(0, math.ceil(PERCENTILE * len(ordered)) - 1)]
        return max(self.floor, self.factor * high), high

    def describe(self) -> str:
        if not self.enabled:
            return "off"
        return (
            f"{self.factor:g} x the p99 of the last {WINDOW} answered calls, at least "
            f"{self.floor * 1000:g} ms, after {self.min_calls} answered calls"
        )


@dataclass(frozen=True)
class Overdue:
    """The verdict on a target: its oldest call in flight, and the limit it passed."""

    age: float
    limit: float
    typical: float  # the recent p99 the limit came from

    def reason(self) -> str:
        return (
            f"a call in flight for {self.age:.1f}s, overdue after {self.limit:.1f}s, "
            f"recent p99 {self.typical * 1000:.0f} ms"
        )


class CallTracker:
    """One target's graph calls in flight (their start times) and its last answered latencies.

    Thread-safe; `begin`/`end` are on the request path (a lock, a dict entry). `clock` is
    injectable so the rule can be tested without waiting.
    """

    def __init__(self, rule: OverdueRule, clock: Callable[[], float] = time.monotonic) -> None:
        self.rule = rule
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens = itertools.count()
        self._in_flight: dict[int, float] = {}  # token -> start, oldest first
        self._latencies: deque[float] = deque(maxlen=WINDOW)

    def begin(self) -> int:
        """A call goes out now; hand the token back to `end`."""
        with self._lock:
            token = next(self._tokens)
            self._in_flight[token] = self._clock()
        return token

    def end(self, token: int, answered: bool) -> None:
        """The call is over; its latency counts only when the graph answered it."""
        with self._lock:
            started = self._in_flight.pop(token, None)
            if answered and started is not None:
                self._latencies.append(self._clock() - started)

    def limit(self) -> tuple[float, float] | None:
        with self._lock:
            latencies = list(self._latencies)
        return self.rule.limit(latencies)

    def oldest(self, since: float) -> float | None:
        """Start of the oldest call in flight that began at or after `since`."""
        with self._lock:
            return next((s for s in self._in_flight.values() if s >= since), None)

    def verdict(self, since: float = -math.inf) -> Overdue | None:
        """Whether the oldest call in flight (begun at or after `since`: calls already judged
        in an earlier outage are not judged again) is overdue now."""
        limit = self.limit()
        started = self.oldest(since)
        if limit is None or started is None:
            return None
        age = self._clock() - started
        return Overdue(age, limit[0], limit[1]) if age > limit[0] else None

    def next_check(self, since: float = -math.inf) -> float:
        """When (on the clock) a verdict could next change: the oldest call's limit passing,
        else a floor from now (a call starting meanwhile cannot be overdue before that)."""
        now = self._clock()
        limit = self.limit()
        later = now + self.rule.floor
        started = self.oldest(since)
        if limit is None or started is None:
            return later
        return min(started + limit[0], later)

    def snapshot(self) -> dict[str, object]:
        """For /ready: calls in flight, the oldest's age, the limit (None until judged)."""
        limit = self.limit()
        started = self.oldest(-math.inf)
        return {
            "in_flight": len(self._in_flight),
            "oldest_call_seconds": None if started is None else round(self._clock() - started, 3),
            "overdue_after_seconds": None if limit is None else round(limit[0], 3),
        }
