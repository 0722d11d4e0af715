"""The breaker's states on a clock the test moves: who opens it, who may probe, what closes it."""

from __future__ import annotations

import pytest

from logic_service.graph.breaker import CLOSED, HALF_OPEN, OPEN, Breaker, BreakerOpenError


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def _breaker(clock: Clock, failures: int = 3, reset: float = 5.0):
    opened: list[str] = []
    states: list[int] = []
    breaker = Breaker(
        "credit at http://graph:8501",
        failures,
        reset,
        on_change=states.append,
        on_open=lambda error: opened.append(str(error)),
        clock=clock,
    )
    return breaker, opened, states


def test_failures_in_a_row_open_it_and_the_first_probe_is_due_after_the_reset() -> None:
    clock = Clock()
    breaker, opened, states = _breaker(clock)
    breaker.failure()
    breaker.success()  # an answer in between: the count starts again
    for _ in range(3):
        breaker.failure()
    assert breaker.state == OPEN and breaker.cause == "failures" and len(opened) == 1
    assert opened[0] == (
        "graph credit at http://graph:8501 is failing (3 connect failure(s) or timeout(s) in "
        "a row): not called; tried again in 5.0s"
    )
    clock.now += 2
    with pytest.raises(BreakerOpenError, match=r"tried again in 3\.0s"):
        breaker.check()
    assert breaker.until_probe() == 3.0 and breaker.start_probe() is None
    breaker.failure()  # a call still in flight failing later opens nothing more
    assert len(opened) == 1
    clock.now += 3
    episode = breaker.start_probe()
    assert episode is not None and breaker.state == HALF_OPEN
    assert breaker.start_probe() is None  # one probe at a time
    clock.now += 0.4
    with pytest.raises(BreakerOpenError, match=r"as soon as it answers the probe sent 0\.4s ago"):
        breaker.check()
    breaker.probe_answered(episode)
    assert breaker.state == CLOSED and breaker.closed_at == clock.now
    assert states == [OPEN, HALF_OPEN, CLOSED]
    breaker.check()


def test_an_overdue_call_opens_it_at_once_with_the_probe_due_now() -> None:
    clock = Clock()
    breaker, opened, _ = _breaker(clock)
    assert breaker.trip("a call in flight for 1.2s, overdue after 1.0s")
    assert not breaker.trip("again")  # already open
    assert breaker.cause == "overdue" and len(opened) == 1
    assert "(a call in flight for 1.2s, overdue after 1.0s): not called" in opened[0]
    assert breaker.until_probe() == 0.0 and breaker.start_probe() is not None


def test_a_probe_timing_out_is_followed_at_once_one_not_connecting_after_the_reset() -> None:
    clock = Clock()
    breaker, _, _ = _breaker(clock)
    breaker.trip("overdue")
    episode = breaker.start_probe()
    assert episode is not None
    clock.now += 10
    breaker.probe_failed(episode, 0.0)  # timed out: the graph takes calls, keep one on it
    assert breaker.state == OPEN and breaker.until_probe() == 0.0
    episode = breaker.start_probe()
    assert episode is not None
    breaker.probe_failed(episode, breaker.reset_seconds)  # refused: wait before the next
    assert breaker.until_probe() == 5.0 and breaker.start_probe() is None
    assert breaker.snapshot() == {
        "state": "open",
        "consecutive_failures": 0,
        "reason": "overdue",
        "retry_in_seconds": 5.0,
    }


def test_a_caller_answered_closes_it_and_the_late_probe_of_that_opening_is_ignored() -> None:
    clock = Clock()
    breaker, _, _ = _breaker(clock)
    breaker.trip("overdue")
    stale = breaker.start_probe()
    assert stale is not None
    breaker.success()  # a call that was stuck is answered: the graph is back
    assert breaker.state == CLOSED
    breaker.trip("overdue again")
    breaker.probe_failed(stale, 5.0)  # the first opening's probe, answered late: no effect
    assert breaker.state == OPEN and breaker.until_probe() == 0.0
    breaker.probe_answered(stale)
    assert breaker.state == OPEN


def test_failures_zero_turns_it_off() -> None:
    clock = Clock()
    breaker, opened, _ = _breaker(clock, failures=0)
    for _ in range(10):
        breaker.failure()
    assert not breaker.trip("overdue")
    assert breaker.state == CLOSED and not opened and not breaker.enabled
    breaker.check()
