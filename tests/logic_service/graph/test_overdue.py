"""The overdue rule on a clock the test moves: when a call still in flight counts as failing."""

from __future__ import annotations

import pytest

from logic_service.graph.overdue import WINDOW, CallTracker, OverdueRule


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _answered(tracker: CallTracker, clock: Clock, seconds: float, n: int) -> None:
    for _ in range(n):
        call = tracker.begin()
        clock.now += seconds
        tracker.end(call, answered=True)


def test_no_verdict_before_enough_calls_were_answered() -> None:
    clock = Clock()
    tracker = CallTracker(OverdueRule(factor=10, floor=1.0, min_calls=20), clock)
    _answered(tracker, clock, 0.005, 19)
    tracker.begin()
    clock.now += 60
    assert tracker.limit() is None and tracker.verdict() is None
    assert tracker.snapshot()["overdue_after_seconds"] is None


def test_a_fast_model_is_judged_at_the_floor() -> None:
    clock = Clock()
    tracker = CallTracker(OverdueRule(factor=10, floor=1.0, min_calls=20), clock)
    _answered(tracker, clock, 0.005, 20)
    assert tracker.limit() == pytest.approx((1.0, 0.005))
    tracker.begin()
    clock.now += 0.99
    assert tracker.verdict() is None
    clock.now += 0.02
    verdict = tracker.verdict()
    assert verdict is not None and verdict.limit == 1.0
    assert verdict.reason() == "a call in flight for 1.0s, overdue after 1.0s, recent p99 5 ms"


def test_a_steady_300_ms_model_is_judged_at_ten_times_that_not_the_floor() -> None:
    clock = Clock()
    tracker = CallTracker(OverdueRule(factor=10, floor=0.1, min_calls=5), clock)
    _answered(tracker, clock, 0.3, 50)
    limit, typical = tracker.limit() or (0.0, 0.0)
    assert typical == pytest.approx(0.3) and limit == pytest.approx(3.0)
    tracker.begin()
    clock.now += 2.9  # ten times slower than usual: still not overdue
    assert tracker.verdict() is None
    clock.now += 0.2
    assert tracker.verdict() is not None


def test_the_two_slowest_of_the_window_do_not_raise_the_limit_but_a_pattern_does() -> None:
    clock = Clock()
    tracker = CallTracker(OverdueRule(factor=10, floor=0.5, min_calls=20), clock)
    _answered(tracker, clock, 0.01, WINDOW - 2)
    _answered(tracker, clock, 5.0, 2)  # a stray hiccup (or a short freeze answered late)
    assert tracker.limit() == pytest.approx((0.5, 0.01))
    _answered(tracker, clock, 0.2, 3)  # a model that became slower: the limit follows
    assert tracker.limit() == pytest.approx((2.0, 0.2))


def test_calls_that_failed_are_not_latencies_and_the_window_forgets() -> None:
    clock = Clock()
    tracker = CallTracker(OverdueRule(factor=10, floor=0.1, min_calls=5), clock)
    for _ in range(10):
        call = tracker.begin()
        clock.now += 30
        tracker.end(call, answered=False)  # timed out: says nothing about normal latency
    assert tracker.limit() is None
    _answered(tracker, clock, 1.0, WINDOW)
    _answered(tracker, clock, 0.02, WINDOW)
    assert tracker.limit() == pytest.approx((0.2, 0.02))


def test_the_oldest_call_is_judged_and_calls_from_before_since_are_not() -> None:
    clock = Clock()
    tracker = CallTracker(OverdueRule(factor=10, floor=1.0, min_calls=1), clock)
    _answered(tracker, clock, 0.01, 1)
    stuck = tracker.begin()
    clock.now += 0.5
    later = tracker.begin()
    clock.now += 0.6
    verdict = tracker.verdict()
    assert verdict is not None and verdict.age == pytest.approx(1.1)
    # The breaker closed after the stuck call was judged: only `later` counts from then on.
    closed_at = clock.now - 0.55
    assert tracker.verdict(since=closed_at) is None
    tracker.end(later, answered=False)
    tracker.end(stuck, answered=True)
    assert tracker.snapshot()["in_flight"] == 0 and tracker.verdict() is None


def test_next_check_is_when_the_oldest_call_would_pass_its_limit() -> None:
    clock = Clock()
    tracker = CallTracker(OverdueRule(factor=10, floor=1.0, min_calls=1), clock)
    assert tracker.next_check() == clock.now + 1.0  # not judged yet: look again in a floor
    _answered(tracker, clock, 0.2, 1)  # limit 2 s
    assert tracker.next_check() == clock.now + 1.0  # nothing in flight
    started = clock.now
    tracker.begin()
    clock.now += 0.5
    assert tracker.next_check() == clock.now + 1.0  # due at started + 2, a floor is sooner
    clock.now += 1.0
    assert tracker.next_check() == pytest.approx(started + 2.0)


def test_factor_zero_turns_the_rule_off() -> None:
    clock = Clock()
    tracker = CallTracker(OverdueRule(factor=0, floor=1.0, min_calls=1), clock)
    _answered(tracker, clock, 0.01, 30)
    tracker.begin()
    clock.now += 3600
    assert tracker.verdict() is None and not tracker.rule.enabled
    assert tracker.rule.describe() == "off"
